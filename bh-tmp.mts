import net from "node:net";
import Dockerode from "dockerode";
const path = "/tmp/bh-docker.sock";
try { (await import("node:fs")).rmSync(path, { force: true }); } catch {}
const srv = net.createServer(() => {}); // accepts, never answers
await new Promise<void>((r) => srv.listen(path, r));
const d = new Dockerode({ socketPath: path });
const t0 = Date.now();
const r = await Promise.race([d.ping().then(() => "answered", (e) => `error ${e.code ?? e.message}`), new Promise((r) => setTimeout(() => r("still waiting after 8s"), 8000))]);
console.log(r, Date.now() - t0, "ms");
process.exit(0);
