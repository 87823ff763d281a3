"""Stream CTGT answers from a FastAPI app to a browser, token by token.

One AsyncCTGT for the whole app, opened in the lifespan and closed on
shutdown, handed to endpoints by a dependency. POST /chat answers with
server-sent events in OpenAI's chunk format; GET / is a one-file page that
shows the tokens as they arrive.

Offline, against the simulator in process (needs fastapi and uvicorn):

    python examples/fastapi_chat.py --simulate

then open http://127.0.0.1:8000. Against the real API, set CTGT_API_KEY and
run `uvicorn examples.fastapi_chat:app`.
"""

import argparse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from ctgt_async import APIConnectionError, APIError, APIStatusError, APITimeoutError, AsyncCTGT

MODEL = "gemini-2.5-flash-lite"


class ChatRequest(BaseModel):
    message: str = Field(min_length=1, max_length=4000)
    persona: str | None = None


def create_app(make_client: Callable[[], AsyncCTGT] = AsyncCTGT) -> FastAPI:
    """The app; `make_client` builds its one AsyncCTGT (the simulator's, in
    tests and demos)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with make_client() as client:
            app.state.ctgt = client
            yield

    app = FastAPI(lifespan=lifespan)

    def ctgt(request: Request) -> AsyncCTGT:
        client: AsyncCTGT = request.app.state.ctgt
        return client

    @app.post("/chat")
    async def chat(
        body: ChatRequest, client: Annotated[AsyncCTGT, Depends(ctgt)]
    ) -> StreamingResponse:
        # Errors before the first token (a 429, a bad key, the service
        # down) raise here, before any byte is sent: the handler below
        # turns them into a proper HTTP status, not an empty 200 stream.
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": body.message}],
            persona=body.persona,
            stream=True,
        )
        # If the browser goes away, the server cancels this body iterator
        # and to_sse() closes the upstream stream at once.
        return StreamingResponse(
            stream.to_sse(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.exception_handler(APIError)
    async def upstream_failed(request: Request, error: APIError) -> JSONResponse:
        return upstream_error_response(error)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE

    return app


def upstream_error_response(error: APIError) -> JSONResponse:
    """The HTTP answer for a CTGT call that failed before streaming began.

    A rate limit is passed on as a 429 (with its Retry-After); an argument
    the server rejected is the caller's 400; everything else is a problem
    of this service's upstream: 504 for a timeout, 502 otherwise. The body
    has the OpenAI error shape and only the server's own words.
    """
    headers: dict[str, str] = {}
    if isinstance(error, APIStatusError) and error.status_code in (400, 429):
        status = error.status_code
        if error.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(error.retry_after)))
    elif isinstance(error, APITimeoutError):
        status = 504
    else:
        status = 502
    if isinstance(error, APIStatusError):
        message = error.server_message or "The model service failed."
        kind = error.type or "upstream_error"
    elif isinstance(error, APIConnectionError):
        message, kind = "The model service is unreachable.", "upstream_error"
    else:
        message, kind = "The model service failed.", "upstream_error"
    return JSONResponse(
        {"error": {"message": message, "type": kind}}, status_code=status, headers=headers
    )


PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>ctgt-async chat</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 42rem;
         margin: 3rem auto; padding: 0 1rem; }
  #answer { white-space: pre-wrap; min-height: 6rem; padding: 1rem;
            background: #f4f4f6; border-radius: .5rem; }
  .error { color: #b00020; }
  form { display: flex; gap: .5rem; margin-bottom: 1rem; }
  input { flex: 1; padding: .5rem; font: inherit; }
</style>
<h1>Ask CTGT</h1>
<form id="ask">
  <input id="message" value="Why is the sky blue?" autofocus>
  <button>Ask</button>
</form>
<div id="answer"></div>
<script>
const answer = document.getElementById("answer");
document.getElementById("ask").addEventListener("submit", async (e) => {
  e.preventDefault();
  answer.textContent = "";
  answer.className = "";
  const response = await fetch("/chat", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({message: document.getElementById("message").value}),
  });
  if (!response.ok) {
    const body = await response.json();
    answer.className = "error";
    answer.textContent = body.error ? body.error.message : response.statusText;
    return;
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += value;
    const events = buffer.split("\\n\\n");
    buffer = events.pop();
    for (const event of events) {
      const lines = event.split("\\n");
      const type = lines.find((l) => l.startsWith("event: "));
      const data = lines.filter((l) => l.startsWith("data: "))
                        .map((l) => l.slice(6)).join("\\n");
      if (type === "event: error") {
        answer.className = "error";
        answer.textContent += "\\n[" + JSON.parse(data).error.message + "]";
      } else if (data !== "[DONE]") {
        const delta = JSON.parse(data).choices[0]?.delta?.content;
        if (delta) answer.textContent += delta;
      }
    }
  }
});
</script>
</html>
"""

app = create_app()


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--simulate", action="store_true")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    if args.simulate:
        from ctgt_async.testing import Simulator

        # A visible pace, so the page shows the tokens arriving.
        simulator = Simulator(time_to_first_token=0.3, token_delay=0.05)
        demo = create_app(simulator.client)
    else:
        demo = app
    uvicorn.run(demo, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
