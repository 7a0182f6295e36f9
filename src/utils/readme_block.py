"""Generated blocks of a Markdown file: the lines between ``<!-- name:begin -->`` and ``<!-- name:end -->``."""


def write_block(path, name, lines):
    """Replace the block ``name`` of the file ``path`` by ``lines`` (a list of str); returns False (and
    writes nothing) when the file has no such markers."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    if begin not in text or end not in text:
        return False
    head, rest = text.split(begin, 1)
    text = head + begin + "\n" + "\n".join(lines) + "\n" + end + rest.split(end, 1)[1]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return True
