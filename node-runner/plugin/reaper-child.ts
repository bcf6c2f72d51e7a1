/**
 * @module plugin/reaper-child
 * The watchdog process of `reaper.ts`. Reads `+pgid` / `-pgid` lines on
 * stdin; at end of input (the runner is gone) it ends every listed group.
 * It ignores SIGINT and SIGHUP: a Ctrl-C to the terminal is for the runner,
 * which then stops its plugins and closes our stdin.
 */

const groups = new Set<number>();
let buf = '';

process.on('SIGINT', () => {});
process.on('SIGHUP', () => {});
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk: string) => {
  buf += chunk;
  let nl: number;
  while ((nl = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, nl);
    buf = buf.slice(nl + 1);
    const pgid = Number(line.slice(1));
    if (!Number.isInteger(pgid) || pgid <= 1) continue;
    if (line[0] === '+') groups.add(pgid);
    else if (line[0] === '-') groups.delete(pgid);
  }
});
process.stdin.on('end', reap);
process.stdin.on('error', reap);

function signalAll(signal: NodeJS.Signals): number {
  let alive = 0;
  for (const pgid of groups) {
    try {
      process.kill(-pgid, signal);
      alive++;
    } catch {
      groups.delete(pgid);
    }
  }
  return alive;
}

function reap(): void {
  if (signalAll('SIGTERM') === 0) process.exit(0);
  setTimeout(() => {
    signalAll('SIGKILL');
    process.exit(0);
  }, 1000);
}
