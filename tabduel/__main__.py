from tabduel.cli import run

run()
