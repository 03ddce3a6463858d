/**
 * Entry point of the `hodei` CLI: runs the command line and nothing else, so that importing
 * program.ts (in tests, say) has no side effects. A reader that goes away (`hodei logs ID | head`)
 * ends the CLI quietly rather than with an EPIPE stack trace.
 */
import { runCli } from "./program.js";

for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(typeof process.exitCode === "number" ? process.exitCode : 0);
    throw err;
  });
}

void runCli(process.argv);
