"""The verbs users call from Python: simulate(), train(), pick(), evaluate() — each composes the stages and
:mod:`tomopick.io`. Import the submodule you need (``from tomopick.workflows.evaluate import evaluate``); nothing is
imported here so that importing one workflow stays light."""
