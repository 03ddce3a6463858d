import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadHints, loadHintsText } from "./image-hints.js";

describe("image load hints", () => {
  it("say how to load the built image into kind, k3d and minikube, or push it to a registry", () => {
    assert.deepEqual(
      loadHints("hodei-worker:1.2.3").map((h) => h.command),
      [
        "kind load docker-image hodei-worker:1.2.3 --name <cluster>",
        "k3d image import hodei-worker:1.2.3 --cluster <cluster>",
        "minikube image load hodei-worker:1.2.3",
        "docker tag hodei-worker:1.2.3 <registry>/hodei-worker:1.2.3 && docker push <registry>/hodei-worker:1.2.3, then HODEI_K8S_IMAGE=<registry>/hodei-worker:1.2.3",
      ],
    );
  });

  it("name HODEI_K8S_IMAGE only when the tag is not the default one", () => {
    assert.doesNotMatch(loadHintsText("hodei-worker:1.2.3", "hodei-worker:1.2.3"), /and set HODEI_K8S_IMAGE/);
    assert.match(loadHintsText("mine:dev", "hodei-worker:1.2.3"), /and set HODEI_K8S_IMAGE=mine:dev \(the default is hodei-worker:1\.2\.3\)/);
  });
});
