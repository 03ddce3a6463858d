/**
 * `hodei server`: run the control plane in this process. Its code is imported only here, lazily,
 * so that client commands do not load the server, the store and the providers just to start.
 * Configuration comes from the HODEI_* environment (see src/config.ts), not from flags.
 */
import type { Command } from "commander";

export function registerServerCommand(program: Command): void {
  program
    .command("server")
    .description("run the Hodei control plane (configured by HODEI_* environment variables)")
    .action(async () => {
      const { runServer } = await import("../../server/main.js");
      await runServer();
    });
}
