"""Drives the router with OpenAI's Python SDK, unchanged, as an app would; prints what it got
as one JSON object for tests/python-sdk.test.mjs to check. Usage: python_client.py BASE_URL"""

import json
import sys

import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key="sk-unused-by-the-simulator", max_retries=0)
out = {"sdk": openai.__version__}

chat = client.chat.completions.with_raw_response.create(
    model="gpt-4.1", messages=[{"role": "user", "content": "hello python"}]
)
out["chat"] = {
    "environment": chat.headers.get("x-bluegreen-environment"),
    "text": chat.parse().choices[0].message.content,
}

made = client.responses.create(model="gpt-4.1", input="first turn")
out["response"] = {"id": made.id, "text": made.output_text}

with client.responses.stream(model="gpt-4.1", input="streamed") as stream:
    kinds = [event.type for event in stream]
    final = stream.get_final_response()
out["stream"] = {"first": kinds[:2], "last": kinds[-1], "id": final.id, "text": final.output_text}

out["retrieved"] = client.responses.retrieve(made.id).id
follow = client.responses.create(model="gpt-4.1", input="second turn", previous_response_id=made.id)
out["follow_up"] = {"id": follow.id, "text": follow.output_text}

vectors = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=["a", "b"])
out["embeddings"] = {
    "environment": vectors.headers.get("x-bluegreen-environment"),
    "route": vectors.headers.get("x-bluegreen-route"),
    "lengths": [len(d.embedding) for d in vectors.parse().data],
}

json.dump(out, sys.stdout)
