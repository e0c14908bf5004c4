"""Rule ``spin_orbit``: hole k·p (Luttinger–Kohn + Bir–Pikus) subbands along growth and the linear-in-k
spin–orbit coefficient / inverse spin–orbit length from the (measured or device) strain profile."""
