/**
 * The web dashboard's files, served on the client port: the built single-page app (dist/dashboard,
 * made by scripts/build.mjs from dashboard/) at `/`, and its client-side routes (/jobs, /jobs/ID,
 * /workers, /tokens, /providers, /schedules, /submit) answered with its index.html.
 *
 * Invariants:
 * - Only files found under the directory when the server starts are ever served: a request path is
 *   looked up, exactly, in that listing; it is never joined to a file system path, so no form of
 *   `..` (plain, percent-encoded, doubled, backslashed) can reach another file.
 * - Hashed assets (/assets/*) are cached for a year (their name changes with their content);
 *   index.html is revalidated every time, so a new release is picked up at the next load.
 * - Anything that is neither a file nor a client-side route is not answered here (the caller's 404),
 *   so every other route of the port keeps its own answer.
 * Files are read once, at start-up, with a gzip copy of those that compress (the app is ~0.5 MB).
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import type http from "node:http";
import type http2 from "node:http2";
import { extname, join, relative, sep } from "node:path";
import { gzipSync } from "node:zlib";

interface StaticFile {
  body: Buffer;
  gzipped: Buffer | null;
  type: string;
  cacheControl: string;
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".woff2": "font/woff2",
  ".txt": "text/plain; charset=utf-8",
};

/** Paths the app routes itself: each answers index.html. */
const CLIENT_ROUTES = [/^\/$/, /^\/jobs\/?$/, /^\/jobs\/[A-Za-z0-9_-]{1,100}\/?$/, /^\/workers\/?$/, /^\/tokens\/?$/, /^\/providers\/?$/, /^\/schedules\/?$/, /^\/submit\/?$/];

/** The app's own script and styles only; the API is on the same origin. */
const CONTENT_SECURITY_POLICY =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

export interface Dashboard {
  /** True when the dashboard's files were found (else / answers why not). */
  isBuilt: boolean;
  /** Answers the request and returns true when it is the dashboard's; false leaves it to the caller. */
  serve(req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse, path: string): boolean;
}

/** Loads the built dashboard in `dir` (dist/dashboard). A missing directory gives a dashboard that says how to build it. */
export function loadDashboard(dir: string): Dashboard {
  const files = new Map<string, StaticFile>();
  if (existsSync(join(dir, "index.html"))) {
    for (const path of listFiles(dir)) {
      const urlPath = "/" + relative(dir, path).split(sep).join("/");
      const body = readFileSync(path);
      const type = TYPES[extname(path)] ?? "application/octet-stream";
      const isCompressible = /^(text\/|application\/json|image\/svg)/.test(type) && body.length > 1024;
      files.set(urlPath, {
        body,
        gzipped: isCompressible ? gzipSync(body) : null,
        type,
        cacheControl: urlPath.startsWith("/assets/") ? "public, max-age=31536000, immutable" : "no-cache",
      });
    }
  }
  const index = files.get("/index.html");
  return {
    isBuilt: index !== undefined,
    serve(req, res, path) {
      if (req.method !== "GET" && req.method !== "HEAD") return false;
      const isRoute = CLIENT_ROUTES.some((route) => route.test(path));
      const file = files.get(path) ?? (isRoute ? index : undefined);
      if (!file) {
        if (!isRoute) return false;
        res.writeHead(503, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
        res.end("the dashboard is not built: run `npm run build` (npm ci builds it too)\n");
        return true;
      }
      const isGzip = file.gzipped !== null && /\bgzip\b/.test(String(req.headers["accept-encoding"] ?? ""));
      const body = isGzip ? file.gzipped! : file.body;
      const headers: Record<string, string | number> = {
        "content-type": file.type,
        "content-length": body.length,
        "cache-control": file.cacheControl,
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
      };
      if (file.gzipped) headers.vary = "accept-encoding";
      if (isGzip) headers["content-encoding"] = "gzip";
      if (file === index) {
        headers["content-security-policy"] = CONTENT_SECURITY_POLICY;
        headers["x-frame-options"] = "DENY";
      }
      res.writeHead(200, headers);
      if (req.method === "HEAD") res.end();
      else res.end(body);
      return true;
    },
  };
}

function listFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? listFiles(path) : [path];
  });
}
