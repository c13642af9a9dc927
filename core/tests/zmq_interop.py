"""libzmq (through pyzmq) checks a certificate written by minicluster.

usage: zmq_interop.py CERT_FILE OUT_DIR
 - loads CERT_FILE with pyzmq's own ZPL certificate loader,
 - checks libzmq derives the same public key from the secret key,
 - completes a CURVE handshake (REQ/REP over loopback) with the cert as the server's,
 - checks a client holding the wrong server key gets no answer,
 - writes a libzmq-generated certificate into OUT_DIR for the reverse check.
"""
import sys

import zmq
import zmq.auth

cert_file, out_dir = sys.argv[1], sys.argv[2]
public, secret = zmq.auth.load_certificate(cert_file)
assert secret is not None, "pyzmq found no secret key in the certificate"
assert zmq.curve_public(secret) == public, "libzmq derives a different public key"

ctx = zmq.Context()


def exchange(server_key):
    server = ctx.socket(zmq.REP)
    server.curve_server = True
    server.curve_secretkey = secret
    server.curve_publickey = public
    server.linger = 0
    port = server.bind_to_random_port("tcp://127.0.0.1")
    client = ctx.socket(zmq.REQ)
    client.linger = 0
    client_public, client_secret = zmq.curve_keypair()
    client.curve_serverkey = server_key
    client.curve_publickey = client_public
    client.curve_secretkey = client_secret
    client.connect("tcp://127.0.0.1:%d" % port)
    client.send(b"ping")
    answer = None
    if server.poll(3000):
        server.recv()
        server.send(b"pong")
        if client.poll(3000):
            answer = client.recv()
    client.close()
    server.close()
    return answer


assert exchange(public) == b"pong", "CURVE handshake with our certificate failed"
wrong_public, _ = zmq.curve_keypair()
assert exchange(wrong_public) is None, "a client with the wrong server key got through"

zmq.auth.create_certificates(out_dir, "libzmq")
print("ok")
