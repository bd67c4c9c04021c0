"""guacd_handshake.py HOST PORT PROTOCOL: open the Guacamole protocol as a client does.

Sends "select" for PROTOCOL and exits 0 if guacd answers with an "args" instruction (printing
it), 1 otherwise. Run by the guacd role's health check on the host itself.
"""
import socket
import sys


def encode(*elements):
    return ",".join("%d.%s" % (len(e), e) for e in elements) + ";"


def read_instruction(sock):
    """Read one instruction: LENGTH.VALUE elements separated by "," and ending with ";"."""
    buf, elements, pos = "", [], 0
    while True:
        dot = buf.find(".", pos)
        if dot >= 0 and len(buf) > dot + int(buf[pos:dot]) + 1:
            end = dot + 1 + int(buf[pos:dot])
            elements.append(buf[dot + 1:end])
            pos = end + 1
            if buf[end] == ";":
                return elements
            continue
        data = sock.recv(4096)
        if not data:
            raise EOFError("connection closed after %r" % buf)
        buf += data.decode("utf-8")


def main(host, port, protocol):
    try:
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(encode("select", protocol).encode("utf-8"))
            answer = read_instruction(sock)
    except (OSError, ValueError, EOFError) as e:
        print("guacd %s:%s: %s" % (host, port, e))
        return 1
    print(encode(*answer))
    return 0 if answer[0] == "args" else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
