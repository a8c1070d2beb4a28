"""Echo server reference for loopkernel's bench: an asyncio Protocol that
writes back what it receives, run on asyncio's default loop or on uvloop.

Prints "LISTENING host:port" once it accepts connections, then serves until
SIGTERM/SIGINT. With --cert and --key it serves TLS (asyncio's ssl= with an
ssl.SSLContext), the peer of `loopkernel bench echo --tls`.
"""
import argparse
import asyncio
import signal
import ssl
import sys


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def serve(host, port, ctx):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, host, port, backlog=1024, ssl=ctx)
    h, p = server.sockets[0].getsockname()[:2]
    print(f"LISTENING {h}:{p}", flush=True)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    await stop
    server.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    ap.add_argument("--addr", default="127.0.0.1:0")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    a = ap.parse_args()
    ctx = None
    if a.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)
    host, _, port = a.addr.rpartition(":")
    if a.loop == "uvloop":
        import uvloop
        uvloop.install()
    asyncio.run(serve(host, int(port), ctx))


if __name__ == "__main__":
    sys.exit(main())
