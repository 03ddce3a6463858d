/**
 * `hodei image build`: assemble the agent runtime (<data dir>/agent-runtime) and build the default
 * Docker worker image from it, offline: no registry, no base image. Running it again when nothing
 * changed returns at once. The tag is hodei-worker:<package version>, the one both providers use
 * by default; it then prints how to load the image into kind, k3d or minikube, or push it. The image code, dockerode and config.ts (with its
 * schema) are imported lazily, here only, so other commands do not load them.
 *
 * Settings: --data-dir, else HODEI_DATA_DIR, else .hodei; the daemon socket is HODEI_DOCKER_SOCKET,
 * else /var/run/docker.sock. (These two variables are read here until config.ts offers them.)
 */
import { join } from "node:path";
import type { Command } from "commander";
import { clientDataDir, clientDockerSocket } from "../../client-config.js";
import { CliError } from "../errors.js";
import { loadHints, loadHintsText } from "../image-hints.js";
import { printJson } from "../json.js";

interface BuildOptions {
  tag?: string;
  dataDir?: string;
  json?: boolean;
}

/** How long the daemon has to answer a ping, ms. */
const PING_TIMEOUT_MS = 5000;

export function registerImageCommand(program: Command): void {
  const image = program.command("image").description("build the Docker worker image (image build)");

  image
    .command("build")
    .description("assemble the agent runtime and build the Docker worker image, offline; a no-op when up to date")
    .option("--tag <image>", "image reference to build (default: hodei-worker:<version of hodei>)")
    .option("--data-dir <dir>", "where the agent runtime is kept (default: $HODEI_DATA_DIR or .hodei)")
    .option("--json", "print the result as a JSON object")
    .action(async (options: BuildOptions) => {
      const images = await import("../../providers/docker-image.js");
      const { packageRoot } = await import("../../config.js");
      const tag = options.tag ?? images.DEFAULT_WORKER_IMAGE;
      const dataDir = clientDataDir(options.dataDir);
      const socketPath = clientDockerSocket();

      const runtime = await explain(
        images.assembleAgentRuntime({
          targetDir: images.defaultRuntimeDir(dataDir),
          nodePath: process.execPath,
          agentPath: join(packageRoot(), "dist", "agent.cjs"),
        }),
      );
      const docker = await connectDocker(socketPath);
      const result = await explain(images.buildWorkerImage(docker, { tag, runtimeDir: runtime.dir }));

      if (options.json) {
        printJson({ ...result, runtimeDir: runtime.dir, runtimeHash: runtime.hash, kubernetesLoad: loadHints(tag) });
        return;
      }
      if (result.built) process.stdout.write(`${tag} built in ${result.seconds.toFixed(1)}s (${Math.round(result.sizeBytes / 1e6)} MB)\n`);
      else process.stdout.write(`${tag} is up to date\n`);
      process.stdout.write(loadHintsText(tag, images.DEFAULT_WORKER_IMAGE));
    });
}

/** A dockerode client for socketPath, once the daemon has answered a ping. */
async function connectDocker(socketPath: string) {
  const { default: Dockerode } = await import("dockerode");
  const docker = new Dockerode({ socketPath });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer in ${PING_TIMEOUT_MS} ms`)), PING_TIMEOUT_MS);
  });
  try {
    await Promise.race([docker.ping(), timeout]);
  } catch (err) {
    throw new CliError(`cannot reach the Docker daemon at ${socketPath} (start it, or set HODEI_DOCKER_SOCKET)`, 1, { cause: err });
  } finally {
    clearTimeout(timer);
  }
  return docker;
}

/** The image code's errors already say what to do: print them as they are, without a stack trace. */
async function explain<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (err) {
    throw new CliError(err instanceof Error ? err.message : String(err), 1, { cause: err });
  }
}
