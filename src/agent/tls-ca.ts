/**
 * The CA certificates that verify an https:// control plane, from the agent's environment:
 * - HODEI_TLS_CA_PEM, PEM text: how the server hands its HODEI_TLS_CA to workers on every provider
 *   (public, not a secret);
 * - HODEI_TLS_CA, a PEM file: for an agent started by hand or from an image that holds the CA.
 * Both may be set: either CA is then trusted. With neither, Node's system roots verify the server.
 */
import { readFileSync } from "node:fs";

export function readTlsCa(env: NodeJS.ProcessEnv): string[] | undefined {
  const cas: string[] = [];
  if (env.HODEI_TLS_CA_PEM) cas.push(env.HODEI_TLS_CA_PEM);
  if (env.HODEI_TLS_CA) {
    try {
      cas.push(readFileSync(env.HODEI_TLS_CA, "utf8"));
    } catch (err) {
      throw new Error(`HODEI_TLS_CA: cannot read ${env.HODEI_TLS_CA}: ${(err as Error).message}`, { cause: err });
    }
  }
  return cas.length > 0 ? cas : undefined;
}
