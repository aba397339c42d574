from gluon_triplet.cli import main

raise SystemExit(main())
