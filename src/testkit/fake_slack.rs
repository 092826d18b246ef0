//! A fake Slack incoming-webhook server. (to be completed)
