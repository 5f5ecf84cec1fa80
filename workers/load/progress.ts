/** Download progress: bytes per file and overall, with rate and time left. */

export interface FileProgress {
  file: string;
  done: number;
  total: number;
}

export interface LoadProgress {
  /** The file that just advanced. */
  file: string;
  fileDone: number;
  fileTotal: number;
  /** Over every file registered so far. */
  done: number;
  total: number;
  /** Bytes per second since the first byte. */
  rate: number;
  /** Seconds left at the current rate (Infinity before any byte arrived). */
  etaSeconds: number;
  files: FileProgress[];
}

export type ProgressListener = (progress: LoadProgress) => void;

export class ProgressTracker {
  private readonly files = new Map<string, FileProgress>();
  private startedAt: number | null = null;

  constructor(
    private readonly listener: ProgressListener = () => {},
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Announce a file (or part of one) whose bytes will be counted. */
  expect(file: string, bytes: number): void {
    const entry = this.files.get(file);
    if (entry) entry.total += bytes;
    else this.files.set(file, { file, done: 0, total: bytes });
  }

  add(file: string, bytes: number): void {
    this.startedAt ??= this.now();
    let entry = this.files.get(file);
    if (!entry) {
      entry = { file, done: 0, total: 0 };
      this.files.set(file, entry);
    }
    entry.done += bytes;
    if (entry.done > entry.total) entry.total = entry.done;
    this.listener(this.snapshot(entry));
  }

  snapshot(current?: FileProgress): LoadProgress {
    let done = 0;
    let total = 0;
    for (const f of this.files.values()) {
      done += f.done;
      total += f.total;
    }
    const seconds = this.startedAt === null ? 0 : (this.now() - this.startedAt) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    return {
      file: current?.file ?? '',
      fileDone: current?.done ?? 0,
      fileTotal: current?.total ?? 0,
      done,
      total,
      rate,
      etaSeconds: rate > 0 ? (total - done) / rate : Infinity,
      files: [...this.files.values()].map((f) => ({ ...f })),
    };
  }
}
