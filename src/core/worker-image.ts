/**
 * The default worker image's name, shared by `hodei image build`, the Docker provider and the
 * Kubernetes provider: `hodei-worker:<package version>`. A versioned tag, never `latest`, because
 * Kubernetes pulls a `latest` image on every start by default (imagePullPolicy Always): an image
 * loaded onto the nodes (kind, k3d, minikube) but in no registry would fail with ErrImagePull.
 * With a versioned tag and IfNotPresent, a node that has the image uses it.
 *
 * The package version is known at build time (the JSON import is inlined by the bundler), so every
 * part of one installation agrees on the tag without computing anything.
 */
import pkg from "../../package.json" with { type: "json" };

export const WORKER_IMAGE_REPOSITORY = "hodei-worker";
export const DEFAULT_WORKER_IMAGE = `${WORKER_IMAGE_REPOSITORY}:${pkg.version}`;
