"""The Typer app `ddz`: parse, call the library, render with rich."""
