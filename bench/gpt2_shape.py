"""The GPT-2 shape flags every GPT-2 peer takes, with `shatter bench train`'s defaults."""
SHAPE = [("layers", 4), ("d-model", 256), ("heads", 4), ("vocab", 2048), ("seq", 128), ("batch", 8)]


def add_shape(parser, extra=()):
    """Adds the shape flags and `extra` (name, default) pairs as integer options."""
    for name, default in [*SHAPE, *extra]:
        parser.add_argument("--" + name, type=int, default=default)
