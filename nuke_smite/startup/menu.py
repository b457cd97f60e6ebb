"""Nuke GUI start-up for SMITE: Nodes toolbar -> SMITE -> SMITE Matte."""

import nuke


def _register():
    toolbar = nuke.menu("Nodes")
    smite_menu = toolbar.addMenu("SMITE")
    smite_menu.addCommand("SMITE Matte", "import nuke_smite.node; nuke_smite.node.create_node()")


_register()
