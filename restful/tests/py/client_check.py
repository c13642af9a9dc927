"""Drive the published flux-restful-client (PyPI) against a server.

Usage: client_check.py URL USER PASSWORD SECRET MODE CLIENT ANSWERS
MODE is "stand-in" or "flux": which commands produce the output we look for.
CLIENT is "0.2.1" (the flux-restful-client package) or "1.1.0" (the client inside flux-restful).
ANSWERS is "upstream" (the server's default: flux-restful 1.1.0's answers) or "strict" (the
server runs with --strict).
Prints one line per check and "ALL OK" at the end; any failed check raises.
"""
import sys
import time

url, user, password, secret, mode, client, answers = sys.argv[1:8]
strict = answers == "strict"
if client == "1.1.0":
    from flux_restful.client.main.client import FluxRestfulClient, get_encoded_auth
else:
    from flux_restful_client.main.client import FluxRestfulClient, get_encoded_auth


def check(name, cond, detail=""):
    if not cond:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok {name}", flush=True)


def wait(cli, jobid, states=("INACTIVE",), limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        info = cli.jobs(jobid)
        if info and info.get("state") in states:
            return info
        time.sleep(0.1)
    raise AssertionError(f"job {jobid} did not reach {states}: {info}")


cli = FluxRestfulClient(host=url, user=user, token=password, secret_key=secret)

# The first call gets a 401 with WWW-Authenticate, does the token handshake and retries.
nodes = cli.list_nodes()
check("nodes", isinstance(nodes.get("nodes"), list) and len(nodes["nodes"]) >= 1, nodes)
check("token handshake", cli.headers.get("Authorization", "").startswith("Bearer "), cli.headers)

# Submit with options.
res = cli.submit(
    "echo hello from the client",
    num_tasks=1,
    cores_per_task=1,
    num_nodes=1,
    exclusive=False,
    workdir="/tmp",
    option_flags={"cpu-affinity": "off"},
)
check("submit", res.get("Message") == "Job submit." and isinstance(res.get("id"), int), res)
jobid = res["id"]
info = wait(cli, jobid)
check("job info", info["id"] == jobid and info["result"] == "COMPLETED" and info["returncode"] == 0, info)
check("job info workdir", info.get("cwd") == "/tmp", info)
out = cli.output(jobid)
check("output", "hello from the client" in "".join(out.get("Output", [])), out)

# Environment variables.
res = cli.submit("printenv GREETING", envars={"GREETING": "hi there"})
wait(cli, res["id"])
out = cli.output(res["id"])
check("envars", "".join(out.get("Output", [])) == "hi there\n", out)

# Listings: all three forms, and search.
listing = cli.jobs()
ids = [j["id"] for j in listing["jobs"]]
check("jobs", jobid in ids, listing)
# The clients send `detail` and `query`; flux-restful reads `details` and `search`, so by
# default these are the plain listing and an unfiltered search.
detail = cli.jobs(detail=True)
rows = cli.jobs(detail=True, listing=True)
found = cli.search("no job has this")
if strict:
    check("jobs detail", str(jobid) in detail and detail[str(jobid)]["state"] == "INACTIVE", list(detail)[:3])
    check("jobs detail listing", isinstance(rows, list) and any(r["id"] == jobid for r in rows), rows[:1])
    check("search", found["recordsFiltered"] == 0 and found["recordsTotal"] >= 2, found)
    found = cli.search("echo")
    check("search finds", found["recordsFiltered"] >= 1, found)
else:
    check("jobs detail", jobid in [j["id"] for j in detail["jobs"]], list(detail)[:3])
    check("jobs detail listing", jobid in [j["id"] for j in rows["jobs"]], list(rows)[:3])
    check("search", found["recordsFiltered"] == found["recordsTotal"] >= 2, found)

# Streaming: lines arrive while the job runs.
if mode == "stand-in":
    command = "seq 5"
else:
    command = "sh -c 'for i in 1 2 3 4 5; do echo $i; sleep 0.2; done'"
res = cli.submit(command)
sid = res["id"]
# flux-restful-client 0.2.1's stream_output() fails before it sends anything: httpx's
# Client.stream() is a context manager, and the client reads .status_code off it. The
# request it means to make, through the client's own session and credentials:
try:
    list(cli.stream_output(sid))
    streamed_by_client = True
except AttributeError:
    streamed_by_client = False
arrivals = []
with cli.session.stream(
    "GET", f"{cli.host}/{cli.prefix}/jobs/{sid}/output/stream", headers=cli.headers, timeout=60
) as r:
    check("stream status", r.status_code == 200, r.status_code)
    for line in r.iter_lines():
        if line:
            arrivals.append((time.time(), line))
lines = [l for _, l in arrivals]
check("stream", lines == ["1", "2", "3", "4", "5"], lines)
check("stream is live", arrivals[-1][0] - arrivals[0][0] > 0.3, arrivals)
print(f"note: client stream_output usable: {streamed_by_client}")

# Cancel.
res = cli.submit("sleep 120")
cid = res["id"]
wait(cli, cid, states=("RUN",))
answer = cli.cancel(cid)
check("cancel", answer == {"Message": "Job is requested to cancel.", "id": str(cid)}, answer)
info = wait(cli, cid)
check("canceled", info["result"] == "CANCELED", info)

# An unknown job: the client prints its message and returns None on 404.
check("unknown job", cli.jobs(123456789) is None)
out = cli.output(123456789)
answer = cli.cancel(123456789)
if strict:
    check("unknown job output", out == {"detail": "Job 123456789 not found"}, out)
    check("unknown job cancel", answer == {"Message": "Job cannot be cancelled: unknown job id.", "id": "123456789"}, answer)
else:
    check("unknown job output", out == {"Message": "The output does not exist yet, or the jobid is incorrect."}, out)
    check("unknown job cancel", answer == {"Message": "Job cannot be cancelled: [Errno 2] unknown job id.", "id": "123456789"}, answer)


def refused(bad):
    """The answer a client is left with when its handshake is refused."""
    try:
        return bad.list_nodes()
    except AttributeError as e:
        # flux-restful-client 0.2.1 logs response.reason (a requests attribute; httpx calls it
        # reason_phrase) when /v1/token refuses, and so raises instead of returning the 401.
        assert "reason" in str(e), e
        return "raised"


# A wrong password is refused: the handshake fails and no token is kept.
bad = FluxRestfulClient(host=url, user=user, token="not-the-password", secret_key=secret)
answer = refused(bad)
check("no token kept", "Authorization" not in bad.headers, bad.headers)
r = bad.do_request(
    "token",
    "POST",
    headers={"Authorization": "Bearer " + get_encoded_auth(user, "not-the-password", secret)},
)
check(
    "wrong password refused",
    r.status_code == 400 and r.json() == {"detail": "Incorrect user or password"}
    and answer in ("raised", {"detail": "Not authenticated"}),
    (r.status_code, r.text, answer),
)
# A wrong shared secret too.
bad = FluxRestfulClient(host=url, user=user, token=password, secret_key="guessed")
answer = refused(bad)
check("wrong secret refused", answer in ("raised", {"detail": "Not authenticated"}), answer)
print(f"note: refused handshake seen by the client as: {answer}")

print("ALL OK")
