"""Echo server for bench/echo/run_echo_bench.py, on asyncio's own loop or on corio's.

    PYTHONPATH=<build>/bindings/python python3 echo_server.py --port N --loop corio|asyncio
        [--api protocol|streams]

protocol: an asyncio.Protocol that writes back what data_received gets (uvloop's benchmark
shape); streams: start_server with reader.read / writer.write + drain. The same code runs on
either loop, so the ratio measures the loops.
"""

import argparse
import asyncio
import signal
import socket


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        self.transport.write(data)


async def echo_stream(reader, writer):
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while data := await reader.read(16384):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    writer.close()


async def serve(port, api):
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    if api == "protocol":
        server = await loop.create_server(Echo, "127.0.0.1", port, backlog=4096)
    else:
        server = await asyncio.start_server(echo_stream, "127.0.0.1", port, backlog=4096)
    async with server:
        await stop


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--loop", choices=["corio", "asyncio"], default="corio")
    ap.add_argument("--api", choices=["protocol", "streams"], default="protocol")
    args = ap.parse_args()
    if args.loop == "corio":
        import corio

        corio.run(serve(args.port, args.api))
    else:
        asyncio.run(serve(args.port, args.api))


if __name__ == "__main__":
    main()
