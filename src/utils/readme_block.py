"""Generated blocks of a Markdown file: the lines between ``<!-- name:begin -->`` and ``<!-- name:end -->``."""


def _markers(name):
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def read_block(path, name):
    """The lines of the block ``name`` of the file ``path`` (a list of str, as :func:`write_block` wrote
    them), or None when the file has no such markers."""
    begin, end = _markers(name)
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    if begin not in text or end not in text:
        return None
    inner = text.split(begin, 1)[1].split(end, 1)[0]
    return inner[1:-1].split("\n") if inner.startswith("\n") and inner.endswith("\n") else inner.split("\n")


def write_block(path, name, lines):
    """Replace the block ``name`` of the file ``path`` by ``lines`` (a list of str); returns False (and
    writes nothing) when the file has no such markers."""
    begin, end = _markers(name)
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    if begin not in text or end not in text:
        return False
    head, rest = text.split(begin, 1)
    text = head + begin + "\n" + "\n".join(lines) + "\n" + end + rest.split(end, 1)[1]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return True
