/**
 * What `hodei image build` prints after building: how to make the image reachable by a Kubernetes
 * cluster's nodes. The image exists only in the local Docker daemon; a node uses it when it has it
 * (imagePullPolicy IfNotPresent, the provider's default) or can pull it from a registry. Pure.
 */

export interface LoadHint {
  /** kind, k3d, minikube, registry. */
  cluster: string;
  command: string;
}

/** One command per way of putting `tag` on the nodes; the registry one names the image to configure. */
export function loadHints(tag: string): LoadHint[] {
  const name = tag.replace(/^.*\//, "");
  return [
    { cluster: "kind", command: `kind load docker-image ${tag} --name <cluster>` },
    { cluster: "k3d", command: `k3d image import ${tag} --cluster <cluster>` },
    { cluster: "minikube", command: `minikube image load ${tag}` },
    { cluster: "registry", command: `docker tag ${tag} <registry>/${name} && docker push <registry>/${name}, then HODEI_K8S_IMAGE=<registry>/${name}` },
  ];
}

export function loadHintsText(tag: string, defaultTag: string): string {
  const lines = [
    `For the Kubernetes provider, put ${tag} where the nodes find it (pods use imagePullPolicy IfNotPresent by default):`,
    ...loadHints(tag).map((hint) => `  ${`${hint.cluster}:`.padEnd(10)} ${hint.command}`),
  ];
  if (tag !== defaultTag) lines.push(`  and set HODEI_K8S_IMAGE=${tag} (the default is ${defaultTag})`);
  return `${lines.join("\n")}\n`;
}
