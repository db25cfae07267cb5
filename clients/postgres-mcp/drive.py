#!/usr/bin/env python3
"""Drive the MCP server postgres-mcp 0.3.0 over stdio, as an agent's MCP client does.

Run it with the python that setup.sh prints (its venv has postgres-mcp and the
mcp SDK); the database URI goes to the server in DATABASE_URI:

    PY="$(clients/postgres-mcp/setup.sh)"
    "$PY" clients/postgres-mcp/drive.py --uri URI tools
    "$PY" clients/postgres-mcp/drive.py --uri URI sql "SELECT 1" "DELETE FROM t WHERE id = 1"
    "$PY" clients/postgres-mcp/drive.py --uri URI session < statements.jsonl

One invocation starts ONE postgres-mcp process (so one connection pool) and
prints JSON lines on stdout:
  tools    one {"name", "description", "input_schema"} per tool the server offers
  sql      one result per statement argument, in order
  session  reads one JSON string (an SQL text) per line on stdin and answers
           each with one result line before reading the next, until EOF; so a
           caller can act between two calls (a human granting a token) while
           the agent's server and its pool stay up
A result is {"sql", "ok", "is_error", "text"}: text is what the agent reads.
postgres-mcp catches every error inside its execute_sql tool and returns a
normal result (isError false) whose text is "Error: " and the server's message,
DETAIL and HINT lines included; so ok = not isError and the text does not start
with "Error: ".

If the server dies or does not answer within --timeout seconds, the last line
is {"fatal": [...]} and the exit status is 2; --server-log FILE keeps the
server's stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

SQL_TOOL = "execute_sql"  # postgres-mcp's tool for arbitrary SQL; its one argument is "sql"


def emit(obj) -> None:
    print(json.dumps(obj, default=str), flush=True)


def result_text(res) -> str:
    return "\n".join(getattr(c, "text", None) or repr(c) for c in res.content)


async def run_sql(session: ClientSession, sql: str, timeout: float) -> dict:
    res = await session.call_tool(SQL_TOOL, {"sql": sql}, read_timeout_seconds=timedelta(seconds=timeout))
    text = result_text(res)
    return {
        "sql": sql,
        "ok": (not res.isError) and not text.startswith("Error: "),
        "is_error": bool(res.isError),
        "text": text,
    }


async def run(args) -> int:
    params = StdioServerParameters(
        command=args.server_bin,
        args=[f"--access-mode={args.access_mode}", "--transport=stdio"],
        # The SDK adds PATH, HOME, USER, ... of this process; not PG* variables.
        env={"DATABASE_URI": args.uri},
    )
    with open(args.server_log or os.devnull, "a") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await asyncio.wait_for(session.initialize(), args.timeout)
                if args.cmd == "tools":
                    listed = await asyncio.wait_for(session.list_tools(), args.timeout)
                    for t in listed.tools:
                        emit({"name": t.name, "description": t.description, "input_schema": t.inputSchema})
                elif args.cmd == "sql":
                    for sql in args.statements:
                        emit(await run_sql(session, sql, args.timeout))
                else:  # session
                    while True:
                        line = await asyncio.to_thread(sys.stdin.readline)
                        if not line:
                            break
                        if not line.strip():
                            continue
                        sql = json.loads(line)
                        if not isinstance(sql, str):
                            raise ValueError(f"session: expected a JSON string per line, got {line!r}")
                        emit(await run_sql(session, sql, args.timeout))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uri", default=os.environ.get("DATABASE_URI"),
                    help="postgresql:// URI the server connects with (default: $DATABASE_URI)")
    ap.add_argument("--server-bin", default=os.environ.get("POSTGRES_MCP_BIN", str(Path(sys.executable).parent / "postgres-mcp")),
                    help="the postgres-mcp executable (default: beside this python, i.e. in setup.sh's venv)")
    ap.add_argument("--access-mode", default="unrestricted", choices=["unrestricted", "restricted"])
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds for each MCP request")
    ap.add_argument("--server-log", help="append the server's stderr to this file")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("tools")
    p_sql = sub.add_parser("sql")
    p_sql.add_argument("statements", nargs="+")
    sub.add_parser("session")
    args = ap.parse_args()
    if not args.uri:
        ap.error("--uri or DATABASE_URI is required")
    try:
        return asyncio.run(run(args))
    except Exception as e:  # includes the ExceptionGroup anyio raises when the server dies
        leaves, stack = [], [e]
        while stack:
            x = stack.pop()
            if isinstance(x, BaseExceptionGroup):
                stack.extend(x.exceptions)
            else:
                leaves.append(f"{type(x).__name__}: {x}")
        emit({"fatal": leaves, "hint": "the server exited or did not answer; --server-log FILE keeps its stderr"})
        return 2


if __name__ == "__main__":
    sys.exit(main())
