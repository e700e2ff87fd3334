#!/usr/bin/env python3
"""A test SMTP server for SMTPClientTests, on aiosmtpd.

Binds 127.0.0.1 on a free port, prints exactly one line `PORT <n>` to stdout, then serves until killed.

Modes:
  ok              accept every message (250) and write it into --dir
  tempfail-first  answer the first DATA with 451, accept (and write) the later ones
  reject          answer every DATA with 554
  silent          accept TCP connections and never send a byte (not even a greeting)

Each accepted message is one file in --dir, written atomically (a temporary name, then a rename): header lines
`from <addr>`, `to <addr>` (one per recipient), `tls yes|no` and `auth <user> <mechanism>` (or `auth -`), a blank
line, then the data exactly as received, dot-unstuffed, CRLF line ends kept.
"""

import argparse
import asyncio
import logging
import os
import ssl
import sys
import uuid
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    """Answers DATA according to the mode and stores accepted messages."""

    def __init__(self, directory, mode):
        self.directory = directory
        self.mode = mode
        self.data_commands = 0

    async def handle_DATA(self, server, session, envelope):
        self.data_commands += 1
        if self.mode == "reject":
            return "554 5.7.1 rejected"
        if self.mode == "tempfail-first" and self.data_commands == 1:
            return "451 4.3.0 try again later"
        self.store(session, envelope)
        return "250 2.0.0 OK"

    def store(self, session, envelope):
        header = [f"from {envelope.mail_from}"]
        header += [f"to {recipient}" for recipient in envelope.rcpt_tos]
        header.append("tls " + ("yes" if session.ssl is not None else "no"))
        header.append("auth " + (session.auth_data if session.authenticated else "-"))
        content = ("\n".join(header) + "\n\n").encode("utf-8") + envelope.original_content
        name = uuid.uuid4().hex
        temporary = os.path.join(self.directory, f".{name}.tmp")
        with open(temporary, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.rename(temporary, os.path.join(self.directory, f"{name}.eml"))


def make_authenticator(user, password):
    """An aiosmtpd authenticator accepting exactly USER:PASS (PLAIN or LOGIN)."""
    expected = LoginPassword(user.encode("utf-8"), password.encode("utf-8"))

    def authenticate(server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword) and auth_data == expected:
            return AuthResult(success=True, auth_data=f"{user} {mechanism}")
        return AuthResult(success=False, handled=False)

    return authenticate


async def hold_open(reader, writer):
    """The silent mode: read and discard until the client goes away, never writing."""
    try:
        while await reader.read(4096):
            pass
    finally:
        writer.close()


async def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True, help="folder to write accepted messages into")
    parser.add_argument("--mode", choices=["ok", "tempfail-first", "reject", "silent"], default="ok")
    parser.add_argument("--auth", metavar="USER:PASS", help="require AUTH with these credentials")
    parser.add_argument("--tls-cert", help="certificate (PEM) to offer STARTTLS with")
    parser.add_argument("--tls-key", help="private key (PEM) of --tls-cert")
    parser.add_argument("--require-starttls", action="store_true", help="refuse mail commands before STARTTLS")
    arguments = parser.parse_args()
    if bool(arguments.tls_cert) != bool(arguments.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if arguments.require_starttls and not arguments.tls_cert:
        parser.error("--require-starttls needs --tls-cert and --tls-key")
    os.makedirs(arguments.dir, exist_ok=True)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")

    loop = asyncio.get_running_loop()
    if arguments.mode == "silent":
        server = await asyncio.start_server(hold_open, host="127.0.0.1", port=0)
    else:
        handler = Handler(arguments.dir, arguments.mode)
        options = {}
        if arguments.auth:
            user, separator, password = arguments.auth.partition(":")
            if not separator:
                parser.error("--auth takes USER:PASS")
            options.update(
                authenticator=make_authenticator(user, password), auth_required=True, auth_require_tls=False
            )
        if arguments.tls_cert:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(arguments.tls_cert, arguments.tls_key)
            options.update(tls_context=context, require_starttls=arguments.require_starttls)
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="fixture.test", loop=loop, **options), host="127.0.0.1", port=0
        )

    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
