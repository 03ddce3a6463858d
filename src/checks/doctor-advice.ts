/**
 * What `hodei doctor` tells a user to do about a provider that fails, read from the failure in
 * words (the provider's health detail, or the probe job's reason). Pure, so it is tested on its own.
 */

export interface AdviceInput {
  provider: string;
  /** The provider answered its health check. */
  apiOk: boolean;
  /** The provider's health detail. */
  detail: string;
  /** The address the provider's workers use to reach the control plane. */
  workerServerUrl: string;
  /** Why the probe job failed; "" when it did not run or succeeded. */
  reason: string;
}

/** The setting that holds a provider's worker-facing URL. */
export function workerUrlSetting(provider: string): string {
  const prefix = provider === "kubernetes" ? "K8S" : provider.toUpperCase().replace(/[^A-Z0-9]/g, "_");
  return `HODEI_${prefix}_WORKER_SERVER_URL`;
}

const DNS_FAILURE = /ENOTFOUND|EAI_AGAIN|cannot resolve/i;
const IMAGE_MISSING = /image\b.*\bnot found|ImagePullBackOff|ErrImagePull/i;
const UNREACHABLE = /did not register within|ECONNREFUSED/i;

/** One line of advice, or "" when there is nothing specific to say (or nothing failed). */
export function doctorAdvice(input: AdviceInput): string {
  if (!input.apiOk) return input.detail;
  const { reason, provider } = input;
  if (!reason) return "";
  const setting = workerUrlSetting(provider);
  if (DNS_FAILURE.test(reason)) {
    const host = unresolvedHost(reason) ?? hostOf(input.workerServerUrl) ?? "the control plane's host";
    if (provider === "kubernetes" && hostOf(input.workerServerUrl) === "host.docker.internal") {
      return "pods cannot resolve host.docker.internal; set HODEI_K8S_WORKER_SERVER_URL to an address pods can reach (the Service's DNS name, e.g. http://hodei.<namespace>.svc:7070)";
    }
    return `workers cannot resolve ${host}; set ${setting} to an address they can reach`;
  }
  if (IMAGE_MISSING.test(reason)) return "build or pull the worker image (npx hodei image build for docker)";
  if (UNREACHABLE.test(reason)) {
    return `workers cannot reach ${input.workerServerUrl || "the control plane"}; check ${setting} and that the port is open to them`;
  }
  return "";
}

/** The name in "getaddrinfo ENOTFOUND some.host" (Node's wording). */
function unresolvedHost(reason: string): string | undefined {
  return /(?:ENOTFOUND|EAI_AGAIN)\s+([A-Za-z0-9.-]+)/.exec(reason)?.[1];
}

function hostOf(url: string): string | undefined {
  try {
    return new URL(url).hostname || undefined;
  } catch {
    return undefined;
  }
}
