/**
 * A service a port does not serve, answered rather than left to a bare 404: with HODEI_WORKER_PORT
 * set, the main port refuses WorkerService and the worker port refuses JobService. Every method
 * fails with `unimplemented` and a message that names the port to use, in whatever protocol the
 * caller speaks (gRPC, gRPC-Web or Connect), before it reads any request message.
 */
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type ServiceImpl } from "@connectrpc/connect";

/** Registers `service` on `router` with every method refused with message() (read at call time). */
export function refuseService(router: ConnectRouter, service: DescService, message: () => string): void {
  const refuse = () => new ConnectError(message(), Code.Unimplemented);
  const implementation: Record<string, unknown> = {};
  for (const method of service.methods) {
    const isStreamingResponse = method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming";
    implementation[method.localName] = isStreamingResponse
      ? async function* () {
          throw refuse();
        }
      : async () => {
          throw refuse();
        };
  }
  router.service(service, implementation as Partial<ServiceImpl<DescService>>);
}
