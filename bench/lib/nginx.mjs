// nginx as the reference plain reverse proxy (and as the load balancer in front of several replicas),
// when it is installed. Runs as the current user with its own prefix, config and free port.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort, waitForPort } from "../../test/support/services.mjs";

export function nginxPath() {
  for (const p of ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]) {
    if (spawnSync(p, ["-v"]).status === 0) return p;
  }
  return null;
}

/** Starts nginx proxying to `upstreams` (host:port strings). Resolves with { url, stop }. */
export async function startNginx(upstreams, { workers = 1 } = {}) {
  const bin = nginxPath();
  if (!bin) return null;
  const dir = mkdtempSync(path.join(os.tmpdir(), "gh-nginx-"));
  const port = await freePort();
  const conf = `
worker_processes ${workers};
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream backend {
    ${upstreams.map((u) => `server ${u};`).join("\n    ")}
    keepalive 256;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}`;
  writeFileSync(path.join(dir, "nginx.conf"), conf);
  const child = spawn(bin, ["-p", dir, "-c", path.join(dir, "nginx.conf")], { stdio: "ignore" });
  await waitForPort(port, { timeoutMs: 5_000, what: "nginx" });
  return {
    url: `http://127.0.0.1:${port}`,
    stop: () =>
      new Promise((r) => {
        child.once("exit", r);
        child.kill("SIGQUIT");
      }),
  };
}
