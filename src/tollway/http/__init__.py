"""The thin HTTP edge: parse, call, render."""
