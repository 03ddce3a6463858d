/** The agent's only reader of its environment, set by the provider that started the worker. */
export interface AgentConfig {
  serverUrl: string;
  otpToken: string;
  workDir: string;
  /** How long to keep trying to register (connection refused, not yet recorded). */
  registerTimeoutMs: number;
  /** How long to keep trying to reconnect a lost stream before giving up on the attempt. */
  reconnectWindowMs: number;
  /** Log output is cut into a chunk after this long without a flush. */
  flushIntervalMs: number;
  /** The job's environment starts from these (PATH, HOME, ...). */
  baseEnv: Record<string, string>;
  /** Non-secret markers passed on to every process of the job. */
  markers: Record<string, string>;
}

const MARKERS = ["HODEI_MANAGED_BY", "HODEI_CLUSTER_ID", "HODEI_WORKER_ID", "HODEI_WORKER_NAME", "HODEI_JOB_ID", "HODEI_ATTEMPT"];

export function readAgentConfig(env: NodeJS.ProcessEnv): AgentConfig {
  const serverUrl = env.HODEI_SERVER_URL ?? "";
  const otpToken = env.HODEI_OTP_TOKEN ?? "";
  if (!serverUrl) throw new Error("HODEI_SERVER_URL is not set: the agent needs the control plane's worker-facing address");
  if (!otpToken) throw new Error("HODEI_OTP_TOKEN is not set: the agent needs the OTP token it was started with");
  const baseEnv: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && !key.startsWith("HODEI_")) baseEnv[key] = value;
  }
  const markers: Record<string, string> = {};
  for (const key of MARKERS) if (env[key]) markers[key] = env[key]!;
  markers.HODEI_WORKER_PID = String(process.pid);
  return {
    serverUrl,
    otpToken,
    workDir: env.HODEI_WORK_DIR || process.cwd(),
    registerTimeoutMs: Number(env.HODEI_REGISTER_TIMEOUT_MS || 60_000),
    reconnectWindowMs: Number(env.HODEI_RECONNECT_WINDOW_MS || 120_000),
    flushIntervalMs: Number(env.HODEI_LOG_FLUSH_INTERVAL_MS || 25),
    baseEnv,
    markers,
  };
}
