from gigacanvas.cluster.cli import entry

entry()
