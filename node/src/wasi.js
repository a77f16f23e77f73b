// WASI with no authority, for a component that imports it (a custom build of the guest, or the
// hostile test component): what the Rust and Python hosts give such a component with an empty
// WASI context. No environment, no arguments, no preopened directory, closed standard streams,
// no terminal, sockets and name lookup denied; clocks and random numbers, which grant nothing,
// work. Anything else a component imports is a function that traps when called, so nothing
// the host does not list here is reachable.

import { randomBytes } from 'node:crypto';

/** A WIT `result` error answered by a host import (jco lowers a thrown `{payload}` as `err`). */
function err(payload) {
  return Object.assign(Object.create(null), { payload });
}

const CLOSED = { tag: 'closed' };

/** A resource the host never hands out; its methods trap should one appear. */
class Unused {}

class InputStream {
  read() {
    throw err(CLOSED);
  }
  blockingRead() {
    throw err(CLOSED);
  }
  skip() {
    throw err(CLOSED);
  }
  blockingSkip() {
    throw err(CLOSED);
  }
}

class OutputStream {
  checkWrite() {
    throw err(CLOSED);
  }
  write() {
    throw err(CLOSED);
  }
  blockingWriteAndFlush() {
    throw err(CLOSED);
  }
  flush() {
    throw err(CLOSED);
  }
  blockingFlush() {
    throw err(CLOSED);
  }
  writeZeroes() {
    throw err(CLOSED);
  }
  blockingWriteZeroesAndFlush() {
    throw err(CLOSED);
  }
}

class Network {}

const stdin = new InputStream();
const stdout = new OutputStream();
const stderr = new OutputStream();

const randomU64 = () => randomBytes(8).readBigUInt64LE();

/** Interface name (as jco keys imports, without version) -> members. */
const EMPTY = {
  'wasi:random/random': { getRandomBytes: (n) => new Uint8Array(randomBytes(Number(n))), getRandomU64: randomU64 },
  'wasi:random/insecure': { getInsecureRandomBytes: (n) => new Uint8Array(randomBytes(Number(n))), getInsecureRandomU64: randomU64 },
  'wasi:random/insecure-seed': { insecureSeed: () => [randomU64(), randomU64()] },
  'wasi:clocks/wall-clock': {
    now: () => {
      const ms = Date.now();
      return { seconds: BigInt(Math.floor(ms / 1000)), nanoseconds: (ms % 1000) * 1e6 };
    },
    resolution: () => ({ seconds: 0n, nanoseconds: 1e6 }),
  },
  'wasi:clocks/monotonic-clock': { now: () => process.hrtime.bigint(), resolution: () => 1n },
  'wasi:cli/environment': {
    getEnvironment: () => [],
    getArguments: () => [],
    initialCwd: () => undefined,
  },
  'wasi:cli/stdin': { getStdin: () => stdin },
  'wasi:cli/stdout': { getStdout: () => stdout },
  'wasi:cli/stderr': { getStderr: () => stderr },
  'wasi:cli/terminal-input': { TerminalInput: Unused },
  'wasi:cli/terminal-output': { TerminalOutput: Unused },
  'wasi:cli/terminal-stdin': { getTerminalStdin: () => undefined },
  'wasi:cli/terminal-stdout': { getTerminalStdout: () => undefined },
  'wasi:cli/terminal-stderr': { getTerminalStderr: () => undefined },
  'wasi:filesystem/preopens': { getDirectories: () => [] },
  'wasi:filesystem/types': { Descriptor: Unused, DirectoryEntryStream: Unused, filesystemErrorCode: () => undefined },
  'wasi:io/error': { Error: Unused },
  'wasi:io/poll': { Pollable: Unused },
  'wasi:io/streams': { InputStream, OutputStream },
  'wasi:sockets/network': { Network },
  'wasi:sockets/instance-network': { instanceNetwork: () => new Network() },
  'wasi:sockets/tcp': { TcpSocket: Unused },
  'wasi:sockets/udp': { UdpSocket: Unused },
  'wasi:sockets/tcp-create-socket': {
    createTcpSocket: () => {
      throw err('access-denied');
    },
  },
  'wasi:sockets/udp-create-socket': {
    createUdpSocket: () => {
      throw err('access-denied');
    },
  },
  'wasi:sockets/ip-name-lookup': {
    ResolveAddressStream: Unused,
    resolveAddresses: () => {
      throw err('permanent-resolver-failure');
    },
  },
};

/**
 * The import object of an interface the checkpoint world does not define: WASI with no
 * authority, or for anything unknown, members that trap when called.
 * @param {string} name As jco keys imports (`wasi:cli/environment`).
 */
export function deniedImport(name) {
  const known = EMPTY[name] ?? {};
  return new Proxy(known, {
    get(target, member) {
      if (typeof member !== 'string') return undefined;
      if (Object.hasOwn(target, member)) return target[member];
      return function denied() {
        throw new Error(`the Node host grants no \`${name}\`: \`${member}\` refused`);
      };
    },
  });
}
