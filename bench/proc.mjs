// What the benchmarks read of /proc: which workerd processes this one started, and their CPU.
import fs from "node:fs";
import { execFileSync } from "node:child_process";

/** The fields of /proc/PID/stat after the command name (which may hold spaces): [0] = state. */
export function statFields(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/** Pids of this process's children whose command line mentions workerd. */
export function workerdChildren() {
  const pids = new Set();
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (Number(statFields(entry)[1]) !== process.pid) continue; // [1] = ppid
      if (fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").includes("workerd")) pids.add(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return pids;
}

/** utime + stime of a process, all threads, in clock ticks. */
export function cpuTicks(pid) {
  const f = statFields(pid);
  return Number(f[11]) + Number(f[12]); // fields 14 and 15 of stat(5)
}

/** Clock ticks a second (CLK_TCK), 100 when getconf cannot say. */
export function clockTicksPerSecond() {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
}
