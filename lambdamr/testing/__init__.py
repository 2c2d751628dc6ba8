"""Test support: stand-ins for the services lambdamr talks to. Nothing here is deployed
(``lambdamr.deploy`` ships only the runtime's modules) and nothing here runs on Lambda."""
