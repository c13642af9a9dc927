"""A libzmq CURVE server (pyzmq ROUTER, as a Flux broker's overlay binds) holding a
certificate, for the entrypoint's check that rank 0 holds its certificate.

usage: curve_check.py CERT_FILE
 - prints the port it listens on (127.0.0.1) on a line of its own,
 - serves until its standard input closes,
 - then prints what libzmq saw, one line per connection handshake event:
   "event NAME VALUE" (VALUE is libzmq's protocol error name for a protocol failure).
"""
import sys

import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

public, secret = zmq.auth.load_certificate(sys.argv[1])
ctx = zmq.Context()
server = ctx.socket(zmq.ROUTER)
server.curve_server = True
server.curve_secretkey = secret
server.curve_publickey = public
server.linger = 0
monitor = server.get_monitor_socket(
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
port = server.bind_to_random_port("tcp://127.0.0.1")
print(port, flush=True)

sys.stdin.read()

protocol_errors = {
    getattr(zmq, name): name for name in dir(zmq) if name.startswith("PROTOCOL_ERROR_")
}
while monitor.poll(200):
    event = recv_monitor_message(monitor)
    name = zmq.Event(event["event"]).name
    value = event["value"]
    if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        value = protocol_errors.get(value, value)
    print("event", name, value, flush=True)
server.disable_monitor()
monitor.close()
server.close()
ctx.term()
