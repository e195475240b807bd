// fresh-shell: an agent that runs each tool call as Claude Code's Bash tool
// does, a fresh `bash -c` spawned with piped stdio, and records what the
// model would see of it.
//   node fresh-shell.js COMMANDS.json RESULTS.jsonl
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');

const [, , commandsFile, resultsFile] = process.argv;
const commands = JSON.parse(fs.readFileSync(commandsFile, 'utf8'));

function run(command) {
  return new Promise((resolve) => {
    const start = Date.now();
    const child = spawn('bash', ['-c', command], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    // 'close': the process has exited and its streams have ended.
    child.on('close', (code, signal) => {
      const exit = code !== null ? code : 128 + os.constants.signals[signal];
      resolve({ command, stdout, stderr, exit, seconds: (Date.now() - start) / 1000 });
    });
  });
}

(async () => {
  for (const command of commands) {
    fs.appendFileSync(resultsFile, JSON.stringify(await run(command)) + '\n');
  }
  fs.appendFileSync(resultsFile, JSON.stringify({ done: true, pid: process.pid }) + '\n');
  setInterval(() => {}, 1 << 30); // an agent lives on
})();
