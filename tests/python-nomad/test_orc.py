"""python-nomad 2.1.0 against a running orc server.

Driven by crates/orc/tests/cli/python_nomad.rs, which starts a server with fake nodes, writes
the job JSON that `orc job run -output examples/nginx.job` prints, and sets NOMAD_ADDR and
ORC_TEST_JOB_JSON (and ORC_TEST_SERVERS, the number of servers). Runs in order: each test builds on the previous one's state.
"""

import json
import os
import time
import unittest

import nomad
import nomad.api.exceptions as exc

JOB_ID = "nginx-minipot"


def client():
    return nomad.Nomad(address=os.environ["NOMAD_ADDR"], timeout=10)


def wait_for(what, fn, timeout=10.0):
    deadline = time.time() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


class T01Jobs(unittest.TestCase):
    def test_1_register_list_read(self):
        n = client()
        with open(os.environ["ORC_TEST_JOB_JSON"]) as f:
            job = json.load(f)
        resp = n.jobs.register_job(job)
        self.assertTrue(resp["EvalID"])
        self.assertGreater(resp["JobModifyIndex"], 0)

        jobs = n.jobs.get_jobs()
        self.assertEqual([j["ID"] for j in jobs], [JOB_ID])
        self.assertIn(JOB_ID, n.jobs)
        self.assertEqual(n.jobs.get_jobs(prefix="ngin")[0]["ID"], JOB_ID)
        self.assertEqual(n.jobs.get_jobs(prefix="zzz"), [])
        self.assertEqual(len(n.jobs.get_jobs(filter_='Type == "service"', meta=True)), 1)
        self.assertEqual(n.jobs.get_jobs(namespace="default")[0]["Namespace"], "default")

        j = n.job.get_job(JOB_ID)
        self.assertEqual(j["ID"], JOB_ID)
        self.assertEqual(j["TaskGroups"][0]["Tasks"][0]["Driver"], "pot")
        self.assertIn(JOB_ID, n.job)
        self.assertEqual(n.job[JOB_ID]["Name"], JOB_ID)
        self.assertEqual(len(n.job.get_versions(JOB_ID)["Versions"]), 1)
        self.assertIn("group1", n.job.get_summary(JOB_ID)["Summary"])

    def test_2_allocations_and_evaluations(self):
        n = client()
        allocs = wait_for("a placement", lambda: n.job.get_allocations(JOB_ID))
        self.assertEqual(len(allocs), 1)
        alloc_id = allocs[0]["ID"]
        evals = n.job.get_evaluations(JOB_ID)
        self.assertEqual(evals[0]["TriggeredBy"], "job-register")

        listed = n.allocations.get_allocations()
        self.assertEqual([a["ID"] for a in listed], [alloc_id])
        self.assertEqual(n.allocations.get_allocations(prefix=alloc_id[:4])[0]["ID"], alloc_id)
        a = n.allocation.get_allocation(alloc_id)
        self.assertEqual(a["JobID"], JOB_ID)
        self.assertEqual(a["Job"]["ID"], JOB_ID)

        e = n.evaluation.get_evaluation(evals[0]["ID"])
        self.assertEqual(e["Status"], "complete")
        self.assertEqual(n.evaluation.get_allocations(evals[0]["ID"])[0]["ID"], alloc_id)
        self.assertEqual(n.evaluations.get_evaluations(prefix=evals[0]["ID"][:6])[0]["ID"], evals[0]["ID"])

    def test_3_nodes(self):
        n = client()
        nodes = n.nodes.get_nodes()
        self.assertEqual(len(nodes), 2)
        node_id = nodes[0]["ID"]
        self.assertIn(node_id, n.nodes)
        self.assertEqual(n.node.get_node(node_id)["ID"], node_id)
        self.assertIsInstance(n.node.get_allocations(node_id), list)
        n.node.eligible_node(node_id, ineligible=True)
        self.assertEqual(n.node.get_node(node_id)["SchedulingEligibility"], "ineligible")
        n.node.eligible_node(node_id, eligible=True)
        self.assertEqual(n.node.get_node(node_id)["SchedulingEligibility"], "eligible")

    def test_4_agent_and_status(self):
        n = client()
        expected = int(os.environ.get("ORC_TEST_SERVERS", "1"))
        members = n.agent.get_members()
        self.assertEqual(len(members["Members"]), expected)
        self.assertTrue(all(m["Status"] == "alive" for m in members["Members"]))
        self.assertIn("member", n.agent.get_agent())
        leader = n.status.leader.get_leader()
        self.assertTrue(leader.startswith("127.0.0.1:"))
        peers = n.status.peers.get_peers()
        self.assertEqual(len(peers), expected)
        self.assertIn(leader, peers)
        servers = n.operator.get_configuration()["Servers"]
        self.assertEqual([s["Address"] for s in servers if s["Leader"]], [leader])

    def test_5_parse(self):
        n = client()
        hcl = (
            'job "parsed" {\n  group "g" {\n    task "t" {\n      driver = "raw_exec"\n'
            '      config {\n        command = "/bin/true"\n      }\n    }\n  }\n}\n'
        )
        raw = n.jobs.parse(hcl)
        self.assertEqual(raw["ID"], "parsed")
        canonical = n.jobs.parse(hcl, canonicalize=True)
        self.assertEqual(canonical["Region"], "global")
        self.assertEqual(canonical["TaskGroups"][0]["Count"], 1)
        with self.assertRaises(exc.BadRequestNomadException):
            n.jobs.parse('job "x" {')

    def test_6_errors(self):
        n = client()
        with self.assertRaises(exc.URLNotFoundNomadException):
            n.job.get_job("no-such-job")
        with self.assertRaises(exc.URLNotFoundNomadException):
            n.allocation.get_allocation("00000000-0000-0000-0000-000000000000")

    def test_7_stop_and_purge(self):
        n = client()
        resp = n.job.deregister_job(JOB_ID)
        self.assertTrue(resp["EvalID"])
        self.assertTrue(n.job.get_job(JOB_ID)["Stop"])
        wait_for(
            "the allocation to stop",
            lambda: all(a["DesiredStatus"] == "stop" for a in n.job.get_allocations(JOB_ID)),
        )
        n.job.deregister_job(JOB_ID, purge=True)
        with self.assertRaises(exc.URLNotFoundNomadException):
            n.job.get_job(JOB_ID)
        self.assertEqual(n.jobs.get_jobs(), [])


if __name__ == "__main__":
    unittest.main()
