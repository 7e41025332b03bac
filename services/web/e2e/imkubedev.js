// Starts and stops a fresh `imkube dev` on a free loopback port with a temp
// data folder, for the end-to-end tests in this folder.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '../../..');
export const BIN = process.env.IMKUBE_BIN ?? path.join(ROOT, 'bin/imkube');
export const OUT = process.env.IMKUBE_TEST_OUTPUT ?? path.join(ROOT, 'test-output/browser');

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {net.AddressInfo} */ (s.address());
      s.close(() => resolve(port));
    });
  });
}

/**
 * @param {string} name names the log file under OUT
 * @returns {Promise<{base: string, ws: string, stop: () => Promise<void>, kill: () => Promise<void>, restart: () => Promise<void>}>}
 */
export async function startImkube(name) {
  fs.mkdirSync(OUT, { recursive: true });
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'imkube-e2e-'));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const logPath = path.join(OUT, `${name}-server.log`);
  fs.writeFileSync(logPath, '');
  /** @type {import('node:child_process').ChildProcess | null} */
  let proc = null;
  const killNow = () => proc?.kill('SIGKILL');
  process.once('exit', killNow); // even when the runner is interrupted

  const kill = async () => {
    const p = proc;
    proc = null;
    if (p && p.exitCode === null && p.signalCode === null) {
      const gone = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(t);
    }
  };
  const stop = async () => {
    process.removeListener('exit', killNow);
    await kill();
    fs.rmSync(dataDir, { recursive: true, force: true });
  };
  const launch = async () => {
    const log = fs.openSync(logPath, 'a');
    const p = spawn(BIN, ['dev', '--addr', `127.0.0.1:${port}`, '--data', dataDir], { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    proc = p;
    let exited = null;
    p.once('exit', (code, signal) => (exited = { code, signal }));
    const end = Date.now() + 30000;
    for (;;) {
      if (exited) throw new Error(`imkube dev exited early (${JSON.stringify(exited)}); see ${logPath}`);
      try {
        const r = await fetch(`${base}/readyz`);
        if (r.ok) return;
      } catch {
        /* not listening yet */
      }
      if (Date.now() > end) throw new Error(`imkube dev not ready within 30 s; see ${logPath}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  try {
    await launch();
  } catch (err) {
    await stop();
    throw err;
  }
  // restart: stop and start on the same port and data folder.
  const restart = async () => {
    await kill();
    await launch();
  };
  return { base, ws: `ws://127.0.0.1:${port}/ws`, stop, kill, restart };
}
