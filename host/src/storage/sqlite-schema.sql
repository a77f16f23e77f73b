-- The tables of a SQLite store, written once for both hosts that open these files: the Rust
-- host (host/src/storage/sqlite.rs, through include_str!) and the Python host
-- (pipeline_checkpoint/storage.py; python/pyproject.toml puts this file into the wheel). One
-- text, so that a database file written by either host opens in the other.
--
-- Each host runs it whole, in the transaction that creates a store: when `ckpt_schema` holds no
-- version yet. The host then writes its schema version (`SCHEMA_VERSION`, in both hosts) into
-- `ckpt_schema`, and checks it on every later open. A change to these tables is a new schema
-- version: bump it in both hosts, with a migration step in each.
--
-- The Python host splits the text into statements with `sqlite3.complete_statement`, so it
-- must stay plain statements ended by `;`.

-- The schema version of the store (one row).
CREATE TABLE IF NOT EXISTS ckpt_schema (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);

-- The entries. Keys are TEXT with the BINARY collation (memcmp order, i.e. UTF-8 byte order,
-- the order `list_keys` answers in), and are only ever data, never paths.
CREATE TABLE ckpt_entries (
    key TEXT NOT NULL PRIMARY KEY COLLATE BINARY,
    value BLOB NOT NULL,
    version INTEGER NOT NULL CHECK (version > 0)
) WITHOUT ROWID;

-- The last version handed out (one row): every put takes the next, in the transaction that
-- stores it, so a version is never handed out twice.
CREATE TABLE ckpt_version_counter (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_version INTEGER NOT NULL CHECK (last_version >= 0)
);
INSERT INTO ckpt_version_counter (id, last_version) VALUES (1, 0);
