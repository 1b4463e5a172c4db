"""The console's pages, one module each: sign-in, requests (the queue, a request and its
forms), reports, and the live feed."""
