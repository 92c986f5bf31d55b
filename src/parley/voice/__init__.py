"""Voice calls: the call lifecycle (pure), TwiML, and the Twilio Voice API client."""
