from handoff.cli.main import main

raise SystemExit(main())
