#!/usr/bin/env python3
"""A scripted stand-in for the model APIs the agent CLIs talk to.

Standard library only, loopback only, no network. It serves, on a free port of
127.0.0.1, the endpoints Claude Code, Codex CLI, Gemini CLI and aider use:

  POST .../v1/messages                 Anthropic Messages (SSE when "stream")
  POST .../v1/messages/count_tokens    Anthropic token count
  POST .../responses                   OpenAI Responses (SSE when "stream")
  POST .../chat/completions            OpenAI Chat Completions (streamed or plain)
  POST .../models/M:streamGenerateContent?alt=sse   Gemini, streamed
  POST .../models/M:generateContent    Gemini, plain
  POST .../models/M:countTokens        Gemini token count
  GET  .../models                      a model list (any API)

What it answers comes from a script (JSON, --script FILE):

  {"steps": [{"read": "{file}"},
             {"write": "{file}", "content": "text\\n"},
             {"shell": "git add {file} && git commit -m '{id}: change'"},
             {"text": "done"}],
   "errors": [{"status": 429, "retry_after": 1}, {"status": 500}, {"status": 529}]}

A conversation that carries tools is answered step by step: the answer to a
request is the step whose index is the number of tool results the request
already holds, so parallel conversations (one per instance) never share
state. A request without tools (titles, summaries, commit messages, "who
speaks next" checks) gets a short text answer. Before any scripted answer,
the "errors" are served in order, one per main request (429 carries a
`retry-after` header, 529 is Anthropic's "overloaded"; "kind": "quota"
makes it a usage-limit / quota-exceeded refusal). "always_error": {...} is
served to every main request after them; "error_every": {"every": 2,
"count": 8, "error": {...}} to the first of every 2 main requests after
them, 8 times in all ("errors": [...] instead of "error" serves them in
turn). "usage" and "side_usage"
({"input_tokens", "output_tokens"}) are the token figures every answer to a
main (scripted) and a side request reports.

A step {"tool": NAME, "args": {...}} calls any tool the client offers
(an MCP server's, say): NAME matches a tool of that name, or one whose name
ends with "__NAME" (Claude Code's and Codex's mcp__<server>__<tool>) or
"_NAME" (Gemini CLI's mcp_<server>_<tool>). In its args, "{result:KEY}" is
the value of the newest "KEY": "..." string in the tool results the request
carries (e.g. the run_id an earlier call returned).

"resolve_steps" answer instead a conversation started by treefarm's
resolution prompt (merge.on_conflict: agent), whose {file} is the first
conflicted file.

For treefarm split's prompt ("Your folder is DIR (round N)"), {file} is the
draft `SPEC-greeting-hello.md` in that folder, relative to the worktree,
{split} the folder and {id} `split-<N>`, N the round of the newest such
prompt in the request. A split conversation is counted per round: the step
is the number of tool results after the message carrying the newest split
prompt, so a conversation the CLI continues from round 1 starts round 2 at
its first step again, and "split_rounds": [[steps of round 1], [steps of
round 2], ...] (the last one for later rounds) replace "steps" per round.
Every text answer of a split conversation ends with the mark
"[scripted reply, split round N]". A request of round N > 1 is "continued"
when it carries round N-1's prompt and that round's answer mark (the CLI
sent its earlier conversation back); with "require_continued": true a
request of round N > 1 that is not continued is refused with a 400 whose
message says so (the CLI fails, and so does the test). Each main request of
a split conversation is recorded with "split": {"round", "continued",
"earlier_rounds", "answered_rounds"}.

In steps, {file} is the first declared file of the prompt, {abs} its absolute
path, {id} the spec id and {worktree} the worktree, all read from the prompt
treefarm assembled (its "Create or modify only these files" list and
"You are working in the git worktree `...`, on branch `treefarm/<id>`").

Every request is appended to --record FILE as one JSON line:
{"method", "path", "headers", "body", "kind"} so tests can assert what reached
the model; every answer that reported usage, to FILE.answers as
{"id", "main", "path", "input_tokens", "output_tokens"} ({id}: the spec). Once the server listens, its port is printed as the first line on
stdout (and written to --port-file when given).
"""

import argparse
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATE = {"errors_served": 0, "ids": 0}


def next_id(prefix):
    with LOCK:
        STATE["ids"] += 1
        return "%s_%06d" % (prefix, STATE["ids"])


def strings(value, out):
    """Every string inside a decoded JSON value, depth first."""
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            strings(v, out)
    elif isinstance(value, list):
        for v in value:
            strings(v, out)
    return out


SPLIT_PROMPT = re.compile(r"Your folder is (\S+) \(round (\d+)\)")
REPLY_MARK = "[scripted reply, split round %d]"
REPLY_MARK_RE = re.compile(r"\[scripted reply, split round (\d+)\]")


def split_conversation(units):
    """For a request of a treefarm split conversation (`units`: its messages,
    input items or contents, oldest first): {"round", "index" (of the unit
    carrying the newest split prompt), "earlier_rounds" (of the split prompts
    before it), "answered_rounds" (whose answer marks it carries),
    "continued"}; None when no unit carries a split prompt."""
    latest, earlier, answered = None, [], set()
    for i, unit in enumerate(units):
        text = "\n".join(strings(unit, []))
        rounds = [int(m.group(2)) for m in SPLIT_PROMPT.finditer(text)]
        if rounds:
            if latest is not None:
                earlier.append(latest[0])
            earlier.extend(rounds[:-1])
            latest = (rounds[-1], i)
        answered.update(int(m.group(1)) for m in REPLY_MARK_RE.finditer(text))
    if latest is None:
        return None
    rnd, index = latest
    answered = sorted(r for r in answered if r < rnd)
    return {"round": rnd, "index": index, "earlier_rounds": sorted(set(earlier)),
            "answered_rounds": answered,
            "continued": rnd > 1 and (rnd - 1) in earlier and (rnd - 1) in answered}


def tool_results_after(units, split, count):
    """The tool results `count(unit)` finds in the units of this round of the
    conversation: after the newest split prompt, else in all of them."""
    start = split["index"] + 1 if split else 0
    return sum(count(u) for u in units[start:] if isinstance(u, dict))


def prompt_facts(body):
    """{file}, {abs}, {id}, {worktree} from the treefarm prompt in a request."""
    text = "\n".join(strings(body, []))
    facts = {"file": "", "abs": "", "id": "", "worktree": ""}
    m = re.search(r"git worktree `([^`]+)`, on branch `treefarm/([^`]+)`", text)
    if m:
        facts["worktree"], facts["id"] = m.group(1), m.group(2)
    m = re.search(r"Create or modify only these files[^\n]*\n((?:[ \t]*- [^\n]+\n?)+)", text)
    if m:
        first = m.group(1).strip().splitlines()[0]
        facts["file"] = first.strip()[2:].strip().strip("`")
    # treefarm's resolution prompt (merge.on_conflict: agent): the first
    # conflicted file is {file}; "resolve_steps" answer this conversation.
    m = re.search(r"Resolve the merge conflict of ([^:\n]+):", text)
    if m and not facts["id"]:
        facts["id"], facts["resolve"] = m.group(1).strip(), "1"
        m = re.search(r"In the git worktree `([^`]+)` a `git merge", text)
        if m:
            facts["worktree"] = m.group(1)
        m = re.search(r"Files with conflicts:\n((?:[ \t]*- [^\n]+\n?)+)", text)
        if m:
            first = m.group(1).strip().splitlines()[0]
            facts["file"] = first.strip()[2:].strip().strip("`")
    # treefarm split's prompt: {split} is the scratch folder, {worktree} the
    # throwaway worktree, {id} `split-<round>`, {file} the draft
    # `<scratch folder>/SPEC-greeting-hello.md` relative to the worktree.
    found = list(SPLIT_PROMPT.finditer(text))
    m = found[-1] if found else None
    if m and not facts["id"]:
        facts["split"], facts["id"] = m.group(1), "split-" + m.group(2)
        facts["split_round"] = m.group(2)
        m = re.search(r"The repository is checked out at `([^`]+)`", text)
        if m:
            facts["worktree"] = m.group(1)
        root = facts["worktree"].rstrip("/") + "/"
        if facts["worktree"] and facts["split"].startswith(root):
            facts["file"] = facts["split"][len(root):] + "/SPEC-greeting-hello.md"
    if facts["worktree"] and facts["file"]:
        facts["abs"] = facts["worktree"].rstrip("/") + "/" + facts["file"]
    return facts


def fill(template, facts):
    out = template
    for key, value in facts.items():
        out = out.replace("{" + key + "}", value)
    return out


def answer_text(step, facts, split):
    """A text step's answer; in a split conversation it ends with the mark
    of its round, so a later round can tell the CLI sent it back."""
    text = fill(step.get("text", "done"), facts)
    if split:
        text += " " + REPLY_MARK % split["round"]
    return text


class Script:
    def __init__(self, path):
        with open(path) as f:
            data = json.load(f)
        self.steps = data.get("steps", [{"text": "done"}])
        # Steps for a conversation started by the resolution prompt.
        self.resolve_steps = data.get("resolve_steps", self.steps)
        # Steps per round of a split conversation, and whether a round > 1
        # must continue the conversation of the round before.
        self.split_rounds = data.get("split_rounds", [])
        self.require_continued = bool(data.get("require_continued", False))
        self.errors = data.get("errors", [])
        self.side_text = data.get("side_text", "ok")
        # Token figures every answer reports: "usage" for the scripted
        # conversations, "side_usage" for side requests (titles, checks).
        self.usage = data.get("usage", {"input_tokens": 10, "output_tokens": 5})
        self.side_usage = data.get("side_usage", self.usage)
        # Served to every main request once "errors" ran out: a provider
        # that keeps refusing (the CLI gives up, as under a real rate limit).
        self.always_error = data.get("always_error")
        # {"every": 2, "count": 8, "error": {...}}: after "errors", the first
        # of every `every` main requests gets the error, `count` times in all
        # (a provider that rate-limits part of its traffic for a while).
        self.error_every = data.get("error_every")

    def tokens(self, main):
        u = self.usage if main else self.side_usage
        return int(u.get("input_tokens", 0)), int(u.get("output_tokens", 0))

    def take_error(self):
        with LOCK:
            i = STATE["errors_served"]
            if i < len(self.errors):
                STATE["errors_served"] = i + 1
                return self.errors[i]
            if self.error_every:
                every = max(1, int(self.error_every.get("every", 2)))
                seen = STATE.get("main_seen", 0)
                STATE["main_seen"] = seen + 1
                served = STATE.get("every_served", 0)
                if seen % every == 0 and served < int(self.error_every.get("count", 0)):
                    STATE["every_served"] = served + 1
                    # "errors": a list served in turn (429 with and without
                    # retry-after, 529 overloaded, ...), else the one "error".
                    several = self.error_every.get("errors")
                    if several:
                        return several[served % len(several)]
                    return self.error_every["error"]
        return self.always_error

    def steps_for(self, facts):
        if facts.get("resolve"):
            return self.resolve_steps
        if facts.get("split_round") and self.split_rounds:
            rnd = int(facts["split_round"])
            return self.split_rounds[min(rnd, len(self.split_rounds)) - 1]
        return self.steps

    def step(self, index, facts=None):
        steps = self.steps_for(facts or {})
        if index < len(steps):
            return steps[index]
        return {"text": "done"}


# --- tool names and arguments per API --------------------------------------


def tool_names(tools):
    names = []
    for t in tools or []:
        if not isinstance(t, dict):
            continue
        if "name" in t:
            names.append(t["name"])
        elif isinstance(t.get("function"), dict):
            names.append(t["function"].get("name", ""))
        for decl in t.get("functionDeclarations", []) or t.get("function_declarations", []) or []:
            names.append(decl.get("name", ""))
    return names


def pick(names, *candidates):
    for c in candidates:
        if c in names:
            return c
    return None


def named_tool(step, names):
    """The offered tool a {"tool": NAME} step means (see the docstring)."""
    want = step["tool"]
    for candidate in (lambda n: n == want, lambda n: n.endswith("__" + want),
                      lambda n: n.endswith("_" + want)):
        for n in names:
            if candidate(n):
                return n
    return want


def result_value(body, key):
    """The newest "KEY": "value" in the request's strings (tool results)."""
    found = ""
    pattern = re.compile(r'"%s"\s*:\s*"([^"\\]+)"' % re.escape(key))
    for text in strings(body, []):
        for m in pattern.finditer(text):
            found = m.group(1)
    return found


def tool_args(step, body):
    """A {"tool"} step's arguments with {result:KEY} filled in."""
    def fill_value(v):
        if isinstance(v, str):
            return re.sub(r"\{result:([A-Za-z0-9_]+)\}", lambda m: result_value(body, m.group(1)), v)
        if isinstance(v, dict):
            return {k: fill_value(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fill_value(x) for x in v]
        return v
    return fill_value(step.get("args", {}))


def anthropic_call(step, names, facts, body=None):
    """(tool name, input) for Claude Code's tools."""
    if "tool" in step:
        return named_tool(step, names), tool_args(step, body)
    if "read" in step:
        return "Read", {"file_path": fill("{abs}", facts) if step["read"] == "{file}" else fill(step["read"], facts)}
    if "write" in step:
        path = fill("{abs}", facts) if step["write"] == "{file}" else fill(step["write"], facts)
        return "Write", {"file_path": path, "content": fill(step.get("content", "written\n"), facts)}
    if "shell" in step:
        return "Bash", {"command": fill(step["shell"], facts), "description": "run a command"}
    return None


def shell_script_for(step, facts):
    """A step as one shell command line (for CLIs whose only tool is a shell)."""
    if "read" in step:
        return "cat " + quote(fill(step["read"], facts))
    if "write" in step:
        path = fill(step["write"], facts)
        content = fill(step.get("content", "written\n"), facts)
        return "mkdir -p \"$(dirname %s)\" && printf '%%s' %s > %s" % (quote(path), quote(content), quote(path))
    return fill(step["shell"], facts)


def quote(s):
    return "'" + s.replace("'", "'\\''") + "'"


def namespaced_tools(tools):
    """{"<namespace>__<tool>": (namespace, tool)} for the Responses API's
    namespace tools (Codex offers an MCP server's tools as one)."""
    out = {}
    for t in tools or []:
        if isinstance(t, dict) and t.get("type") == "namespace":
            for inner in t.get("tools", []) or []:
                if isinstance(inner, dict) and inner.get("name"):
                    out[t.get("name", "") + "__" + inner["name"]] = (t.get("name", ""), inner["name"])
    return out


def codex_call(step, names, facts, body=None):
    """(name, arguments JSON text) for Codex's tools."""
    if "tool" in step:
        return named_tool(step, names), json.dumps(tool_args(step, body))
    cmd = shell_script_for(step, facts)
    if "shell_command" in names:
        return "shell_command", json.dumps({"command": cmd, "workdir": facts["worktree"] or None})
    if "exec_command" in names:
        return "exec_command", json.dumps({"cmd": cmd, "workdir": facts["worktree"] or None})
    return "shell", json.dumps({"command": ["bash", "-lc", cmd], "workdir": facts["worktree"] or None})


def gemini_call(step, names, facts, body=None):
    if "tool" in step:
        return named_tool(step, names), tool_args(step, body)
    if "read" in step and "read_file" in names:
        return "read_file", {"absolute_path": fill("{abs}", facts) if step["read"] == "{file}" else fill(step["read"], facts),
                             "file_path": fill(step["read"], facts)}
    if "write" in step and "write_file" in names:
        path = fill("{abs}", facts) if step["write"] == "{file}" else fill(step["write"], facts)
        return "write_file", {"file_path": path, "content": fill(step.get("content", "written\n"), facts)}
    return "run_shell_command", {"command": shell_script_for(step, facts), "description": "run a command"}


# --- the server -------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    script = None
    record = None

    def log_message(self, fmt, *args):  # quiet: the record file says it all
        pass

    def _record(self, body, kind, split=None):
        entry = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
            "kind": kind,
        }
        if split is not None:
            entry["split"] = {k: v for k, v in split.items() if k != "index"}
        with LOCK:
            with open(self.record, "a") as f:
                f.write(json.dumps(entry) + "\n")

    def _answered(self, facts, main, tin, tout):
        """One line per answer that carried usage figures, in RECORD.answers:
        what each instance was told it spent."""
        entry = {"id": facts.get("id", ""), "main": main, "path": self.path,
                 "input_tokens": tin, "output_tokens": tout}
        with LOCK:
            with open(self.record + ".answers", "a") as f:
                f.write(json.dumps(entry) + "\n")

    def _body(self):
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n) if n else b""
        if self.headers.get("content-encoding", "") in ("gzip",):
            import gzip
            raw = gzip.decompress(raw)
        elif self.headers.get("content-encoding", "") in ("zstd",):
            return {"_undecoded": len(raw)}
        try:
            return json.loads(raw.decode() or "null")
        except ValueError:
            return {"_raw": raw.decode(errors="replace")}

    def _json(self, code, value, headers=None):
        data = json.dumps(value).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _sse_start(self):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True

    def _sse(self, data, event=None):
        chunk = ""
        if event:
            chunk += "event: %s\n" % event
        chunk += "data: %s\n\n" % (data if isinstance(data, str) else json.dumps(data))
        self.wfile.write(chunk.encode())
        self.wfile.flush()

    def _refuse_cold(self, split, api):
        """With "require_continued": the error that refuses a split round
        > 1 which did not continue the conversation of the round before
        (sent; False when it continued, or nothing requires it)."""
        if not (self.script.require_continued and split and split["round"] > 1
                and not split["continued"]):
            return False
        self._error({"status": 400, "message": "scripted server: split round %d did not continue "
                     "the conversation of round %d (earlier prompts of rounds %s, answers of rounds %s)"
                     % (split["round"], split["round"] - 1, split["earlier_rounds"],
                        split["answered_rounds"])}, api)
        return True

    def _error(self, err, api):
        status = int(err.get("status", 500))
        headers = {}
        if "retry_after" in err:
            headers["retry-after"] = str(err["retry_after"])
        if api == "anthropic":
            etype = {429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
            msg = "scripted %d" % status
            if err.get("kind") == "quota":
                msg = "You have exceeded your usage limit (scripted %d)" % status
            body = {"type": "error", "error": {"type": etype, "message": err.get("message", msg)}}
        elif api == "gemini":
            msg = "scripted %d" % status
            if err.get("kind") == "quota":
                msg = "Quota exceeded for quota metric 'Generate Content API requests per minute' (scripted %d)" % status
            gstatus = {400: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}.get(status, "INTERNAL")
            if status == 503:
                msg = "The model is overloaded. Please try again later. (scripted 503)"
            body = {"error": {"code": status, "message": err.get("message", msg), "status": gstatus}}
        else:
            if err.get("kind") == "quota":
                body = {"error": {"message": "You exceeded your current quota (scripted %d)" % status,
                                  "type": "insufficient_quota", "code": "insufficient_quota"}}
            elif status == 429:
                body = {"error": {"message": "Rate limit reached (scripted %d)" % status,
                                  "type": "requests", "code": "rate_limit_exceeded"}}
            else:
                body = {"error": {"message": err.get("message", "scripted %d" % status),
                                  "type": "invalid_request_error" if status == 400 else "server_error",
                                  "code": None}}
        self._json(status, body, headers)

    def do_GET(self):
        self._record(None, "get")
        if self.path.rstrip("/").endswith("/models") or "/models?" in self.path:
            self._json(200, {"object": "list", "data": [{"id": "scripted-model", "object": "model",
                                                         "created": 0, "owned_by": "treefarm"}],
                             "models": []})
        else:
            self._json(404, {"error": {"message": "not scripted: GET " + self.path}})

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_POST(self):
        body = self._body()
        path = self.path.split("?")[0]
        if path.endswith("/count_tokens"):
            self._record(body, "count_tokens")
            return self._json(200, {"input_tokens": 10})
        if path.endswith(":countTokens"):
            self._record(body, "count_tokens")
            return self._json(200, {"totalTokens": 10})
        if path.endswith("/messages"):
            return self.anthropic(body)
        if path.endswith("/responses"):
            return self.openai_responses(body)
        if path.endswith("/chat/completions"):
            return self.chat(body)
        if ":streamGenerateContent" in path or ":generateContent" in path:
            return self.gemini(body, ":streamGenerateContent" in path)
        self._record(body, "other")
        # Telemetry or anything else: accepted and dropped.
        self._json(200, {})

    # --- Anthropic Messages ---

    def anthropic(self, body):
        tools = body.get("tools") if isinstance(body, dict) else None
        main = bool(tools)
        msgs = body.get("messages", [])
        split = split_conversation(msgs) if main else None
        self._record(body, "main" if main else "side", split)
        if main:
            err = self.script.take_error()
            if err:
                return self._error(err, "anthropic")
            if self._refuse_cold(split, "anthropic"):
                return
        done = tool_results_after(msgs, split, lambda m: sum(
            1 for c in (m.get("content") if isinstance(m.get("content"), list) else [])
            if isinstance(c, dict) and c.get("type") == "tool_result"))
        facts = prompt_facts(body)
        step = self.script.step(done, facts) if main else {"text": self.script.side_text}
        call = anthropic_call(step, tool_names(tools), facts, body) if main else None
        model = body.get("model", "scripted-model")
        mid = next_id("msg")
        tin, tout = self.script.tokens(main)
        self._answered(facts, main, tin, tout)
        usage = {"input_tokens": tin, "output_tokens": tout, "cache_creation_input_tokens": 0,
                 "cache_read_input_tokens": 0}
        if call:
            block = {"type": "tool_use", "id": next_id("toolu"), "name": call[0], "input": call[1]}
            stop = "tool_use"
        else:
            block = {"type": "text", "text": answer_text(step, facts, split)}
            stop = "end_turn"
        if not body.get("stream"):
            return self._json(200, {"id": mid, "type": "message", "role": "assistant", "model": model,
                                    "content": [block], "stop_reason": stop, "stop_sequence": None,
                                    "usage": usage})
        self._sse_start()
        self._sse({"type": "message_start", "message": {
            "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": usage}}, "message_start")
        if call:
            start = dict(block, input={})
            self._sse({"type": "content_block_start", "index": 0, "content_block": start}, "content_block_start")
            self._sse({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}},
                      "content_block_delta")
        else:
            self._sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                      "content_block_start")
            self._sse({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "text_delta", "text": block["text"]}}, "content_block_delta")
        self._sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        self._sse({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                   "usage": {"output_tokens": tout}}, "message_delta")
        self._sse({"type": "message_stop"}, "message_stop")

    # --- OpenAI Responses ---

    def openai_responses(self, body):
        tools = body.get("tools") if isinstance(body, dict) else None
        main = bool(tools)
        items = body.get("input", []) if isinstance(body.get("input"), list) else []
        split = split_conversation(items) if main else None
        self._record(body, "main" if main else "side", split)
        if main:
            err = self.script.take_error()
            if err:
                return self._error(err, "openai")
            if self._refuse_cold(split, "openai"):
                return
        done = tool_results_after(items, split, lambda it: int(
            it.get("type") in ("function_call_output", "custom_tool_call_output")))
        facts = prompt_facts(body)
        step = self.script.step(done, facts) if main else {"text": self.script.side_text}
        rid = next_id("resp")
        model = body.get("model", "scripted-model")
        if main and "text" not in step:
            spaced = namespaced_tools(tools)
            name, args = codex_call(step, tool_names(tools) + list(spaced), facts, body)
            item = {"type": "function_call", "id": next_id("fc"), "call_id": next_id("call"),
                    "name": name, "arguments": args, "status": "completed"}
            if name in spaced:
                item["namespace"], item["name"] = spaced[name]
        else:
            text = answer_text(step, facts, split)
            item = {"type": "message", "id": next_id("msg"), "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}
        tin, tout = self.script.tokens(main)
        self._answered(facts, main, tin, tout)
        usage = {"input_tokens": tin, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": tout,
                 "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": tin + tout}
        resp = {"id": rid, "object": "response", "created_at": int(time.time()), "status": "completed",
                "model": model, "output": [item], "usage": usage}
        if not body.get("stream"):
            return self._json(200, resp)
        self._sse_start()
        self._sse({"type": "response.created", "response": dict(resp, status="in_progress", output=[])},
                  "response.created")
        added = dict(item, status="in_progress")
        if item["type"] == "message":
            added["content"] = []
        elif item["type"] == "function_call":
            added["arguments"] = ""
        self._sse({"type": "response.output_item.added", "output_index": 0, "item": added},
                  "response.output_item.added")
        if item["type"] == "message":
            self._sse({"type": "response.output_text.delta", "item_id": item["id"], "output_index": 0,
                       "content_index": 0, "delta": item["content"][0]["text"]}, "response.output_text.delta")
        self._sse({"type": "response.output_item.done", "output_index": 0, "item": item},
                  "response.output_item.done")
        self._sse({"type": "response.completed", "response": resp}, "response.completed")

    # --- OpenAI Chat Completions (aider, through litellm) ---

    def chat(self, body):
        msgs = body.get("messages", []) if isinstance(body, dict) else []
        system = " ".join(strings([m for m in msgs if m.get("role") == "system"], []))
        side = "commit message" in system.lower() or "summar" in system.lower()
        facts = prompt_facts(body)
        main = not side and bool(facts["file"])
        split = split_conversation(msgs) if main else None
        self._record(body, "main" if main else "side", split)
        if main:
            err = self.script.take_error()
            if err:
                return self._error(err, "openai")
            if self._refuse_cold(split, "openai"):
                return
        if main:
            # aider edits through its reply: the "whole" edit format, a file
            # name line followed by the file's new content in a fence.
            step = next((s for s in self.script.steps_for(facts) if "write" in s), {"write": "{file}"})
            path = fill(step["write"], facts)
            content = fill(step.get("content", "written\n"), facts)
            text = "%s\n```\n%s```\n" % (path, content if content.endswith("\n") else content + "\n")
            if split:
                text += "\n" + REPLY_MARK % split["round"] + "\n"
        else:
            text = self.script.side_text if not side else "%s: scripted change" % (facts["id"] or "agent")
        cid = next_id("chatcmpl")
        model = body.get("model", "scripted-model")
        tin, tout = self.script.tokens(main)
        self._answered(facts, main, tin, tout)
        usage = {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout}
        if not body.get("stream"):
            return self._json(200, {"id": cid, "object": "chat.completion", "created": int(time.time()),
                                    "model": model, "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": text}}], "usage": usage})
        self._sse_start()
        base = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        self._sse(dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""},
                                       "finish_reason": None}]))
        for i in range(0, len(text), 40):
            self._sse(dict(base, choices=[{"index": 0, "delta": {"content": text[i:i + 40]},
                                           "finish_reason": None}]))
        self._sse(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}], usage=usage))
        self._sse("[DONE]")

    # --- Gemini ---

    def gemini_model(self):
        """The model named in the path (.../models/M:generateContent), as the
        real API echoes it in modelVersion."""
        m = re.search(r"/models/([^/:?]+):", self.path)
        return m.group(1) if m else "scripted-model"

    def gemini(self, body, stream):
        tools = body.get("tools") if isinstance(body, dict) else None
        main = bool(tools)
        contents = body.get("contents", []) if isinstance(body, dict) else []
        split = split_conversation(contents) if main else None
        self._record(body, "main" if main else "side", split)
        if main:
            err = self.script.take_error()
            if err:
                return self._error(err, "gemini")
            if self._refuse_cold(split, "gemini"):
                return
        done = tool_results_after(contents, split, lambda c: sum(
            1 for p in c.get("parts", []) if isinstance(p, dict) and "functionResponse" in p))
        facts = prompt_facts(body)
        if main:
            step = self.script.step(done, facts)
        else:
            cfg = body.get("generationConfig", {}) if isinstance(body, dict) else {}
            if cfg.get("responseMimeType") == "application/json" or cfg.get("responseJsonSchema") \
                    or cfg.get("responseSchema"):
                step = {"text": json.dumps({"next_speaker": "user", "reasoning": "scripted",
                                            "complexity_reasoning": "scripted", "complexity_score": 1,
                                            "model_choice": "flash"})}
            else:
                step = {"text": self.script.side_text}
        tin, tout = self.script.tokens(main)
        self._answered(facts, main, tin, tout)
        if main and "text" not in step:
            name, args = gemini_call(step, tool_names(tools), facts, body)
            part = {"functionCall": {"name": name, "args": args, "id": next_id("fc")}}
        else:
            part = {"text": answer_text(step, facts, split) if main else fill(step.get("text", "done"), facts)}
        resp = {"candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP",
                                "index": 0}],
                "usageMetadata": {"promptTokenCount": tin, "candidatesTokenCount": tout,
                                  "totalTokenCount": tin + tout},
                "modelVersion": self.gemini_model(), "responseId": next_id("gem")}
        if not stream:
            return self._json(200, resp)
        self._sse_start()
        self._sse(resp)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that hung up (a CLI retrying or exiting) is not an error.
        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)):
            return
        super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser(description="scripted model-API server for treefarm's tests")
    ap.add_argument("--script", required=True)
    ap.add_argument("--record", required=True)
    ap.add_argument("--port-file", help="also write the port here (atomically)")
    args = ap.parse_args()
    Handler.script = Script(args.script)
    Handler.record = args.record
    open(args.record, "a").close()
    server = Server(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(port))
        os.replace(tmp, args.port_file)
    # The first line on stdout is the port: a reader waits for it.
    print(port, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
