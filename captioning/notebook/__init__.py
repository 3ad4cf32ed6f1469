"""The seminar notebook's tools: coursework (the student edition and its grader)."""
