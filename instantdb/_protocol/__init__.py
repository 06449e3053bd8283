"""Sans-I/O protocol: build the request for each call and parse its answer. No I/O here.

One module per feature; `_call` holds the value types and header sets they share.
"""
