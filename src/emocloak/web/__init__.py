"""The local web app (`emocloak serve`): upload photos, cloak them, see what each recognizer reads.

`emocloak.web.app` needs FastAPI and uvicorn; importing this package alone does not.
"""
