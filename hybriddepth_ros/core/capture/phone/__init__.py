"""Focal stacks sent by a phone over a WebSocket."""
