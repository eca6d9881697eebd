"""What every LSIC command line shares: logging setup and turning errors into one line and an
exit code (never a traceback)."""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from collections.abc import Callable

from lsic.codec.errors import LsicError
from lsic.logs import setup_logging


def on_stop_signals(stop: Callable[[], object]) -> None:
    """Call `stop` on SIGTERM or SIGINT, so a service or long job ends cleanly (state saved,
    acknowledgements flushed) instead of dying mid-write."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop())


def grpc_error_line(exc: Exception) -> tuple[str, int] | None:
    """A failed call as one line, with what to do about the common client-side mistakes."""
    import grpc

    if not (isinstance(exc, grpc.RpcError) and hasattr(exc, "code")):
        return None
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE and ("SSL" in details or "handshake" in details.lower()):
        return (
            "could not set up TLS with the service. A service started with --insecure needs --insecure here "
            "(loopback only); a TLS service with a private CA needs --ca CA.pem",
            3,
        )
    if code == grpc.StatusCode.UNAVAILABLE and ("connect" in details.lower() or "refused" in details.lower()):
        return "no service answers at that address: is it running? (--server, or $LSIC_SERVER)", 3
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "the service did not answer in time (--timeout); a TLS service asked in plaintext never does", 3
    return f"{code.name}: {details}", 3


def run_main(prog: str, parser: argparse.ArgumentParser, argv: list[str] | None, check: Callable | None = None) -> int:
    args = parser.parse_args(argv)
    setup_logging(verbose=args.verbose)
    try:
        if check is not None:
            check(args)
        return int(args.func(args) or 0)
    except LsicError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # The reader went away (`lsic info x.lsic | head`): what it read is what it wanted.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell tool killed by the closed pipe would end
    except OSError as exc:
        where = getattr(exc, "filename", None)
        print(f"{prog}: error: {exc.strerror or exc}" + (f": {where}" if where else ""), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        line = grpc_error_line(exc)
        if line is None:
            raise
        print(f"{prog}: error: {line[0]}", file=sys.stderr)
        return line[1]


def region_arg(text: str) -> tuple[int, int, int, int]:
    """argparse type for --region: x,y,w,h in pixels, w and h positive."""
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected x,y,w,h (four whole numbers), got {text!r}") from None
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"x and y must be 0 or more, w and h positive, got {text!r}")
    return x, y, w, h


def whole_number(low: int, high: int | None = None, multiple: int = 1) -> Callable[[str], int]:
    """argparse type for a count, size or port: an integer in low..high (high: no cap when None)
    and a multiple of `multiple`, refused with what it must be rather than passed on to fail later."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {_span(low, high)}, got {value}")
        if value % multiple:
            raise argparse.ArgumentTypeError(f"must be a multiple of {multiple}, got {value}")
        return value

    return parse


def number(low: float, *, above: bool = False) -> Callable[[str], float]:
    """argparse type for a duration or rate: a finite number at least `low` (above it, when
    `above`)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < low or (above and value == low):
            raise argparse.ArgumentTypeError(f"must be {'above' if above else 'at least'} {low:g}, got {text}")
        return value

    return parse


def one_of(*values: str) -> Callable[[str], str]:
    """argparse type for a setting with a few named values (where a config file or the
    environment can give it too, so argparse's own `choices` would not check them)."""

    def parse(text: str) -> str:
        if text not in values:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(values)}, got {text!r}")
        return text

    return parse


def server_address(text: str) -> str:
    """argparse type for a gRPC service address: HOST:PORT (a bracketed IPv6 host too), or a
    target gRPC names by scheme (dns:///..., unix:...)."""
    if text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"give HOST:PORT, not a URL: {text!r}")
    if text.startswith(("dns:", "unix:", "ipv4:", "ipv6:")):
        return text
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT with a port of 1..65535, got {text!r}")
    return text


def _span(low: int, high: int | None) -> str:
    return f"{low} or more" if high is None else f"{low}..{high}"


PORT = whole_number(0, 65535)
