"""Renderers: pure functions from a `RunPlan` to a string (`text.render_text`,
`markdown.render_markdown`); the JSON rendering is the plan file, `planfile.plan_to_json`."""
