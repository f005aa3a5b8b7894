"""In-namespace observers: the commands that start them and the readers of what they record."""
