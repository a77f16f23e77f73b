// Checks the package's hand-written declarations (src/*.d.ts) against the declarations jco
// generates from the component's WIT (generated/interfaces/, not shipped): every record the
// API passes through from the component unchanged must be the same type in both, so a WIT
// change that the declarations miss fails `tsc` in run-tests.sh. (Values the API reshapes, such
// as receipts' acks, resume origins, policies and storage answers, are covered by
// types-check.ts, which also runs.)

import type * as Ck from '../generated/interfaces/pipeline-checkpoint-checkpointer.js';
import type * as S from '../generated/interfaces/pipeline-checkpoint-storage.js';
import type * as T from '../generated/interfaces/pipeline-checkpoint-types.js';
import type * as Api from 'pipeline-checkpoint';

/** `true` only when A and B are assignable to each other. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
/** Fails to compile, on its own line, unless A and B are the same type. */
function same<A, B>(ok: Same<A, B>): void {
  void ok;
}

same<Api.Watermark, T.Watermark>(true);
same<Api.SourcePosition, T.SourcePosition>(true);
same<Api.SinkPosition, T.SinkPosition>(true);
same<Api.OperatorState, T.OperatorState>(true);
same<Api.Checkpoint, T.Checkpoint>(true);
same<Api.ResumePoint, T.ResumePoint>(true);
same<Api.CorruptionKind, T.CorruptionKind>(true);
same<Api.Corruption, T.Corruption>(true);
same<Api.InvalidInput, T.InvalidInput>(true);
same<Api.RegressionInfo, T.RegressionInfo>(true);
same<Api.FencedInfo, T.FencedInfo>(true);
same<Api.TooLargeInfo, T.TooLargeInfo>(true);
same<Api.Options, Ck.Options>(true);
same<Api.OverflowPolicy, Ck.OverflowPolicy>(true);
same<Api.ChangeKind, Ck.ChangeKind>(true);
same<Api.ChangeEvent, Ck.ChangeEvent>(true);
same<Api.Changelog, Ck.Changelog>(true);
same<Omit<Api.Receipt, 'acks'>, Omit<Ck.Receipt, 'acks'>>(true);
same<Api.BatchProgress['pending'], Ck.BatchProgress['pending']>(true);
same<Api.BatchProgress['covered'], Ck.BatchProgress['covered']>(true);
same<Api.StageState, Ck.StageState>(true);
same<NonNullable<Api.Resume['checkpoint']>, NonNullable<Ck.Resume['checkpoint']>>(true);
same<Api.Admission['kind'], Ck.Admission['tag']>(true);
same<Api.Completion['due'], Ck.Completion['due']>(true);
same<Api.DriverOptions['maxInFlight'], Ck.DriverOptions['maxInFlight'] | undefined>(true);
same<Api.CheckpointErrorCode, T.Error['tag']>(true);
same<Api.ResumeOrigin, Ck.ResumeOrigin['tag']>(true);
same<Api.AckOutcome['kind'], Ck.AckOutcome['tag']>(true);
same<Api.Progress['kind'], Ck.Progress['tag']>(true);
same<Api.StorageWrite['op'], S.WriteOp['tag']>(true);
same<Api.BackendErrorKind, S.StorageError['tag']>(true);
same<Api.StoredEntry['value'], S.Entry['value']>(true);
same<Api.StoredCopy, Ck.StoredCopy>(true);
same<Api.StoredSavepoint, Ck.StoredSavepoint>(true);
same<Api.ImportAction, Ck.ImportAction>(true);
same<Api.ImportReceipt, Ck.ImportReceipt>(true);
same<Omit<Api.StageExport, 'latest'>, Omit<Ck.StageExport, 'latest'>>(true);

// What the API accepts includes what jco takes (a Checkpoint read back can be written again).
function accepts<Wide, Narrow extends Wide>(): void {}
accepts<Api.CheckpointInput, T.Checkpoint>();
accepts<Api.ProcessedMessage, Ck.ProcessedMessage>();
accepts<Api.Message, Ck.Message>();
accepts<Api.StageStateInput, Ck.StageState>();
accepts<Api.StageExportInput, Ck.StageExport>();
accepts<Api.DriverOptions, Omit<Ck.DriverOptions, 'policy'> & { policy: Api.Policy }>();
