// Drives the `quest` binary through the official TypeScript SDK (`@openai/codex-sdk`, pinned in
// package.json) exactly as an SDK user would: `new Codex({ codexPathOverride })`, a thread, turns.
//
// Usage:
//   node run-thread.mjs --quest <quest binary> --base-url <http://127.0.0.1:PORT/v1> --cd <dir>
//        [--provider custom|builtin] [--api-key KEY] [--model SLUG]
//        [--prompt TEXT]... [--streamed-prompt TEXT] [--turn-timeout-ms MS]
//   env: QUEST_HOME (inherited by quest), TEST_API_KEY (the custom provider's env_key).
//
// Every `--prompt` is one `thread.run()` turn on the same thread (the first starts the thread,
// later ones resume it); `--streamed-prompt` adds a last turn through `runStreamed()` on a thread
// re-opened with `resumeThread(id)` from a fresh `Codex` instance. For each turn one JSON line is
// printed on stdout: `{turn, kind, threadId, finalResponse, usage, items, eventTypes?}`. Every event
// and item is checked against the SDK's declared types. Any failure exits 1 with the error on
// stderr.
//
// How the SDK (0.163.0, dist/index.js) runs the binary, per turn:
// - `child_process.spawn(codexPathOverride, argv, { env })`: no shell, no `cwd` (the child inherits
//   this process's cwd; `--cd` carries the working directory), stdio all pipes.
// - argv: `exec --experimental-json`, then `--config k=v` for every leaf of `config` flattened to
//   dotted keys (`model_providers.test.base_url="..."`, one flag per leaf, values as TOML literals:
//   strings JSON-quoted, numbers and booleans bare, arrays `[a, b]`), then `configOverrides`
//   verbatim, then `--config openai_base_url="<baseUrl>"`, `--model <model>`, `--sandbox <mode>`,
//   `--cd <workingDirectory>`, `--skip-git-repo-check`, `--cyber-access-program <p>` (turn
//   option), `--config sandbox_workspace_write.network_access=<bool>`,
//   `--config approval_policy="<policy>"`, and last `resume <threadId>` once the thread has an id.
// - env: a copy of `process.env` (or only `env` when that option is given), plus
//   `CODEX_INTERNAL_ORIGINATOR_OVERRIDE=codex_sdk_ts` unless already set, plus
//   `CODEX_API_KEY=<apiKey>` when `apiKey` is given. With `codexPathOverride` PATH is untouched
//   (the bundled `@openai/codex` binary is never looked up, so `npm ci --omit=optional` suffices).
// - stdin: the prompt is written, then stdin is closed. stdout is read line by line; each line
//   must be JSON (`Failed to parse item: <line>` otherwise). `thread.started.thread_id` becomes the
//   thread id; `turn.failed` makes `run()` throw its message; a non-zero exit throws
//   `Codex Exec exited with code N: <stderr>`. When the generator finishes the child is killed if
//   it has not exited.

import { parseArgs } from "node:util";
import { Codex } from "@openai/codex-sdk";

const { values } = parseArgs({
  options: {
    quest: { type: "string" },
    "base-url": { type: "string" },
    cd: { type: "string" },
    provider: { type: "string", default: "custom" },
    "api-key": { type: "string", default: "sk-sdk" },
    model: { type: "string", default: "gpt-test" },
    prompt: { type: "string", multiple: true },
    "streamed-prompt": { type: "string" },
    "turn-timeout-ms": { type: "string", default: "60000" },
  },
  strict: true,
});

function fail(message) {
  process.stderr.write(`run-thread: ${message}\n`);
  process.exit(1);
}

const questPath = values.quest ?? process.env.QUEST_BIN;
const baseUrl = values["base-url"];
const workingDirectory = values.cd;
if (!questPath) fail("--quest <path to the quest binary> (or QUEST_BIN) is required");
if (!baseUrl) fail("--base-url <mock model base URL> is required");
if (!workingDirectory) fail("--cd <working directory> is required");
const prompts = values.prompt ?? ["first turn"];
const turnTimeoutMs = Number(values["turn-timeout-ms"]);
if (!Number.isInteger(turnTimeoutMs) || turnTimeoutMs <= 0) {
  fail(`--turn-timeout-ms must be a positive integer, not ${JSON.stringify(values["turn-timeout-ms"])}`);
}
// The SDK passes the turn's `signal` to `spawn`, so a hung binary is killed when it fires.
const turnOptions = () => ({ signal: AbortSignal.timeout(turnTimeoutMs) });

/** The `Codex` options for one provider mode. */
function codexOptions() {
  // Keep retries short so a broken server fails the test quickly.
  const modelClient = { retry_backoff_base_ms: 10 };
  switch (values.provider) {
    case "custom":
      // A custom provider, as the Rust tests define it with `-c`; the SDK flattens this object
      // into one `--config` flag per leaf.
      return {
        codexPathOverride: questPath,
        apiKey: values["api-key"],
        config: {
          model_provider: "test",
          model_providers: {
            test: {
              name: "test",
              base_url: baseUrl,
              wire_api: "responses",
              env_key: "TEST_API_KEY",
              request_max_retries: 1,
              stream_max_retries: 1,
              stream_idle_timeout_ms: 5000,
            },
          },
          model_client: modelClient,
        },
      };
    case "builtin":
      // The built-in provider pointed at the server with the SDK's own `baseUrl` option
      // (`--config openai_base_url=...`) and the key from `apiKey` (`CODEX_API_KEY`).
      return {
        codexPathOverride: questPath,
        baseUrl,
        apiKey: values["api-key"],
        config: { model_client: modelClient },
      };
    default:
      return fail(`--provider must be custom or builtin, not ${JSON.stringify(values.provider)}`);
  }
}

const threadOptions = {
  model: values.model,
  workingDirectory,
  skipGitRepoCheck: true,
  sandboxMode: "workspace-write",
  networkAccessEnabled: false,
  approvalPolicy: "never",
};

// ---- shape checks against the SDK's declared `ThreadEvent` / `ThreadItem` types ----

const isString = (v) => typeof v === "string";
const isCount = (v) => Number.isInteger(v) && v >= 0;

function check(condition, what, value) {
  if (!condition) {
    throw new Error(`${what}: ${JSON.stringify(value)}`);
  }
}

const ITEM_CHECKS = {
  agent_message: (i) => isString(i.text),
  reasoning: (i) => isString(i.text),
  command_execution: (i) =>
    isString(i.command) &&
    isString(i.aggregated_output) &&
    (i.exit_code === undefined || i.exit_code === null || Number.isInteger(i.exit_code)) &&
    ["in_progress", "completed", "failed", "declined"].includes(i.status),
  file_change: (i) =>
    Array.isArray(i.changes) &&
    i.changes.every((c) => isString(c.path) && ["add", "delete", "update"].includes(c.kind)) &&
    ["completed", "failed"].includes(i.status),
  mcp_tool_call: (i) =>
    isString(i.server) && isString(i.tool) && ["in_progress", "completed", "failed"].includes(i.status),
  web_search: (i) => isString(i.query),
  todo_list: (i) =>
    Array.isArray(i.items) && i.items.every((t) => isString(t.text) && typeof t.completed === "boolean"),
  error: (i) => isString(i.message),
};

function checkItem(item) {
  check(item && typeof item === "object", "item is not an object", item);
  check(isString(item.id) && item.id.length > 0, "item without a string id", item);
  const itemCheck = ITEM_CHECKS[item.type];
  check(itemCheck !== undefined, "item type unknown to the SDK", item);
  check(itemCheck(item), `malformed ${item.type} item`, item);
}

function checkUsage(usage) {
  check(usage && typeof usage === "object", "usage is not an object", usage);
  for (const key of [
    "input_tokens",
    "cached_input_tokens",
    "cache_write_input_tokens",
    "output_tokens",
    "reasoning_output_tokens",
  ]) {
    check(isCount(usage[key]), `usage.${key} is not a token count`, usage);
  }
}

function checkEvent(event) {
  check(event && typeof event === "object", "event is not an object", event);
  switch (event.type) {
    case "thread.started":
      check(isString(event.thread_id) && event.thread_id.length > 0, "thread.started without thread_id", event);
      break;
    case "turn.started":
      break;
    case "turn.completed":
      checkUsage(event.usage);
      break;
    case "turn.failed":
      check(event.error && isString(event.error.message), "turn.failed without error.message", event);
      break;
    case "item.started":
    case "item.updated":
    case "item.completed":
      checkItem(event.item);
      break;
    case "error":
      check(isString(event.message), "error event without message", event);
      break;
    default:
      check(false, "event type unknown to the SDK", event);
  }
}

// ---- the turns ----

function printTurn(record) {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}

async function main() {
  const codex = new Codex(codexOptions());
  const thread = codex.startThread(threadOptions);
  let turn = 0;
  for (const prompt of prompts) {
    turn += 1;
    const result = await thread.run(prompt, turnOptions());
    result.items.forEach(checkItem);
    if (result.usage !== null) checkUsage(result.usage);
    check(isString(thread.id), `no thread id after turn ${turn}`, thread.id);
    printTurn({
      turn,
      kind: "run",
      threadId: thread.id,
      finalResponse: result.finalResponse,
      usage: result.usage,
      items: result.items,
    });
  }

  const streamedPrompt = values["streamed-prompt"];
  if (streamedPrompt !== undefined) {
    turn += 1;
    // A fresh client re-opening the thread by id, as a process restarting would.
    const resumed = new Codex(codexOptions()).resumeThread(thread.id, threadOptions);
    const { events } = await resumed.runStreamed(streamedPrompt, {
      ...turnOptions(),
      cyberAccessProgram: "standard",
    });
    const eventTypes = [];
    const items = [];
    let finalResponse = "";
    let usage = null;
    for await (const event of events) {
      checkEvent(event);
      eventTypes.push(event.type);
      if (event.type === "item.completed") {
        items.push(event.item);
        if (event.item.type === "agent_message") finalResponse = event.item.text;
      } else if (event.type === "turn.completed") {
        usage = event.usage;
      } else if (event.type === "turn.failed") {
        throw new Error(`streamed turn failed: ${event.error.message}`);
      }
    }
    check(eventTypes.at(-1) === "turn.completed", "streamed turn did not end with turn.completed", eventTypes);
    printTurn({ turn, kind: "streamed", threadId: resumed.id, finalResponse, usage, items, eventTypes });
  }
}

main().catch((error) => {
  if (error?.name === "AbortError") {
    fail(`a turn did not finish within ${turnTimeoutMs} ms; the binary was killed`);
  }
  process.stderr.write(`run-thread: ${error?.stack ?? error}\n`);
  process.exit(1);
});
