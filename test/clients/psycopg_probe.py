#!/usr/bin/python3
"""A real Python driver through the proxy: psycopg 3 or psycopg2 (Debian's python3-psycopg and
python3-psycopg2), with a libpq connection string. Runs a prepared statement `repeat` times,
`pause_ms` apart, each in its own transaction, and prints one JSON line: what the server said, which
node answered each time, and every error (SQLSTATE and message) instead of stopping at the first.

    psycopg_probe.py psycopg|psycopg2 '<conninfo>' [repeat] [pause_ms]
"""
import json
import sys
import time

driver, conninfo = sys.argv[1], sys.argv[2]
repeat = int(sys.argv[3]) if len(sys.argv) > 3 else 3
pause = (int(sys.argv[4]) if len(sys.argv) > 4 else 0) / 1000.0
out = {"driver": driver, "connected": False, "ssl": None, "results": [], "errors": []}

def sqlstate(err):
    return getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)

try:
    if driver == "psycopg":
        import psycopg
        conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
        out["ssl"] = bool(conn.pgconn.ssl_in_use)
        run = lambda sql, args=None, prepare=None: conn.execute(sql, args, prepare=prepare).fetchone()
    else:
        import psycopg2
        conn = psycopg2.connect(conninfo, connect_timeout=10)
        conn.autocommit = True
        out["ssl"] = bool(conn.info.ssl_in_use)
        def run(sql, args=None, prepare=None):
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchone()
    out["connected"] = True
    for i in range(repeat):
        try:
            # prepare=True: a named server-side prepared statement (psycopg 3); psycopg2 has none.
            row = run("SELECT %s::int + 1, inet_server_port(), pg_is_in_recovery()", (i,), prepare=True)
            out["results"].append({"sum": row[0], "port": row[1], "in_recovery": row[2]})
        except Exception as err:  # noqa: BLE001 - every error is reported, the loop goes on
            out["errors"].append({"at": i, "sqlstate": sqlstate(err), "message": str(err).strip()})
        if pause:
            time.sleep(pause)
    conn.close()
except Exception as err:  # noqa: BLE001
    out["errors"].append({"at": -1, "sqlstate": sqlstate(err), "message": str(err).strip()})
print(json.dumps(out))
